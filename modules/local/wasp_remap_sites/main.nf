process WASP_REMAP_SITES {
    // Every donor's heterozygous SNPs and indels from the VCF, read once for the run:
    // het_snps.parquet / het_indels.parquet exactly as the local engine writes them.
    tag "${meta.id}"
    label 'process_single'
    container 'ghcr.io/caveat-bench/caveat:0.1.0'

    input:
    tuple val(meta), val(donors)
    tuple path(fasta), path(fai)
    tuple path(vcf), path(tbi)
    path contig_map

    output:
    tuple val(meta), path('het_snps.parquet'), path('het_indels.parquet'), emit: sites
    tuple val(meta), path('het_sites.summary.json'), emit: summary
    tuple val("${task.process}"), val('caveat'), eval('wasp_remap.py --version'), emit: versions_caveat, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def map_arg = contig_map ? "--contig-map ${contig_map}" : ''
    """
    wasp_remap.py \\
        --vcf ${vcf} \\
        --fasta ${fasta} \\
        ${map_arg} \\
        --donor ${donors.join(' ')} \\
        --out-het-snps het_snps.parquet \\
        --out-het-indels het_indels.parquet \\
        --out-summary het_sites.summary.json \\
        ${args}
    """

    stub:
    """
    touch het_snps.parquet het_indels.parquet
    echo '{"het_snps": 0, "het_indels": 0, "vcf_skipped": {}}' > het_sites.summary.json
    """
}
