process COUNT_ALLELES_LIBRARY {
    // REF/ALT/other counts of one single-cell library's WASP-filtered BAM, per donor × cell type
    // of its barcode table (reads by their CB tag; each fragment once), at each group's donor's
    // het SNPs: groups/<donor>_<cell_type>.parquet. COUNT_ALLELES_MERGE sums a group's tables
    // over the libraries holding its cells.
    tag "${meta.id}"
    label 'process_low'
    container 'ghcr.io/caveat-bench/caveat:0.1.0'

    input:
    tuple val(meta), path(bam), path(bai), path(barcodes)
    path het_snps

    output:
    tuple val(meta), path('groups/*.parquet'), emit: groups
    tuple val("${task.process}"), val('caveat'), eval('count_alleles.py --version'), emit: versions_caveat, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def table_donor = meta.table_donor ? "--donor ${meta.table_donor}" : ''
    """
    count_alleles.py \\
        --bam ${bam} \\
        --het-snps ${het_snps} \\
        --sample ${meta.id} \\
        --barcodes ${barcodes} \\
        ${table_donor} \\
        --out-dir groups \\
        ${args}
    """

    stub:
    """
    mkdir -p groups
    touch groups/${meta.id}.stub.parquet
    """
}
