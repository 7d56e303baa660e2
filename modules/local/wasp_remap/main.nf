process WASP_REMAP {
    // WASP mapping filter for one sample on one chromosome: reads over that donor's
    // het SNPs are allele-swapped, remapped with the same aligner and kept only if
    // every version maps back to the same place; then unbiased dedup.
    tag "${meta.id}:${chrom}"
    label 'process_medium'
    container 'ghcr.io/caveat-bench/caveat:0.1.0'

    input:
    tuple val(meta), path(bam), path(bai), val(chrom)
    tuple path(fasta), path(fai)
    tuple path(het_snps), path(het_indels)
    tuple path(index, stageAs: 'aligner_index/*'), val(index_prefix)

    output:
    tuple val(meta), val(chrom), path("${prefix}.${chrom}.bam"), path("${prefix}.${chrom}.bam.bai"), emit: bam
    tuple val(meta), path("${prefix}.${chrom}.stats.json"), emit: stats
    tuple val("${task.process}"), val('caveat'), eval('wasp_remap.py --version'), emit: versions_caveat, topic: versions
    tuple val("${task.process}"), val('bowtie2'), eval('bowtie2 --version 2>&1 | head -n 1 | sed "s/^.*version //"'), emit: versions_bowtie2, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    prefix = task.ext.prefix ?: "${meta.id}"
    def args = task.ext.args ?: ''
    // the het sites come from WASP_REMAP_SITES (the VCF is read once per run, not per task)
    """
    wasp_remap.py \\
        --bam ${bam} \\
        --het-snps ${het_snps} \\
        --het-indels ${het_indels} \\
        --fasta ${fasta} \\
        --sample ${meta.id} \\
        --donor ${meta.donor} \\
        --chrom ${chrom} \\
        --aligner-index aligner_index/${index_prefix} \\
        --threads ${task.cpus} \\
        --out-bam ${prefix}.${chrom}.bam \\
        --out-stats ${prefix}.${chrom}.stats.json \\
        ${args}
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch ${prefix}.${chrom}.bam ${prefix}.${chrom}.bam.bai
    echo '{"sample": "${meta.id}", "reads_in": 0}' > ${prefix}.${chrom}.stats.json
    """
}
