process WASP_REMAP {
    // WASP mapping filter for one sample, or one single-cell library (meta.library), on one group
    // of contigs (WASP_REMAP_PLAN): reads over that donor's (a library: its pooled donors') het SNPs
    // are allele-swapped, remapped with the same aligner and kept
    // only if every version maps back to the same place; then unbiased dedup. The group's
    // contigs are a contiguous run of the BAM header, so WASP_REMAP_GATHER rebuilds the
    // whole-BAM result from the parts byte for byte.
    tag "${meta.id}:${group_id}"
    label 'process_medium'
    container 'ghcr.io/caveat-bench/caveat:0.1.0'

    input:
    // barcodes: a library's barcode table (only its kept rows' reads are kept, dedup per barcode),
    // or [] for a bulk sample (an empty list stages no file: Nextflow TaskInputResolver.normalizeInputToFiles makes one FileHolder per item of a collection)
    tuple val(meta), path(bam), path(bai), path(barcodes), val(group_id), val(contigs)
    tuple path(het_snps), path(het_indels)
    tuple path(index, stageAs: 'aligner_index/*'), val(index_prefix)

    output:
    tuple val(meta), val(group_id), path("${prefix}.${group_id}.bam"), path("${prefix}.${group_id}.bam.bai"), emit: bam
    tuple val(meta), val(group_id), path("${prefix}.${group_id}.stats.json"), emit: stats
    tuple val("${task.process}"), val('caveat'), eval('wasp_remap.py --version'), emit: versions_caveat, topic: versions
    tuple val("${task.process}"), val('bowtie2'), eval('bowtie2 --version 2>&1 | head -n 1 | sed "s/^.*version //"'), emit: versions_bowtie2, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    prefix = task.ext.prefix ?: "${meta.id}"
    def args = task.ext.args ?: ''
    // one --chrom per contig, single-quoted: a reference name holds no quote, comma or
    // whitespace (SAMv1 spec, @SQ SN: [0-9A-Za-z!#$%&+./:;?@^_|~-][0-9A-Za-z!#$%&*+./:;=?@^_|~-]*)
    // but may hold * or | . The het sites come from WASP_REMAP_SITES (the VCF is read once per run),
    // and the contigs were checked against the FASTA's .fai by WASP_REMAP_PLAN: no FASTA here.
    def chrom_args = contigs.collect { c -> "--chrom '${c}'" }.join(' ')
    // a library: every donor pooled in it (the union of their het sites, wasp_remap.library_sites),
    // reads by their CB tag (Cell Ranger's cell barcode)
    def donors = meta.library ? meta.donors.join(' ') : meta.donor
    def barcode_args = meta.library ? "--barcode-tag CB --barcodes ${barcodes}" : ''
    def table_donor = meta.table_donor ? "--table-donor ${meta.table_donor}" : ''
    """
    wasp_remap.py \\
        --bam ${bam} \\
        --het-snps ${het_snps} \\
        --het-indels ${het_indels} \\
        --sample ${meta.id} \\
        --donor ${donors} \\
        ${barcode_args} \\
        ${table_donor} \\
        ${chrom_args} \\
        --aligner-index aligner_index/${index_prefix} \\
        --threads ${task.cpus} \\
        --out-bam ${prefix}.${group_id}.bam \\
        --out-stats ${prefix}.${group_id}.stats.json \\
        ${args}
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch ${prefix}.${group_id}.bam ${prefix}.${group_id}.bam.bai
    echo '{"sample": "${meta.id}", "reads_in": 0}' > ${prefix}.${group_id}.stats.json
    """
}
