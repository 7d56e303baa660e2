process COUNT_ALLELES_MERGE {
    // One donor × cell type group's counts: its tables from every library holding its cells
    // (COUNT_ALLELES_LIBRARY) summed, its concordance with its donor checked, written as
    // COUNT_ALLELES writes a bulk sample's (counts/<sample>.parquet).
    tag "${meta.id}"
    label 'process_single'
    container 'ghcr.io/caveat-bench/caveat:0.1.0'

    input:
    // every library's table has the group's name: the i-th lands in parts/<i>/ (see WASP_REMAP_PLAN)
    tuple val(meta), path(parts, stageAs: 'parts/?/*')

    output:
    tuple val(meta), path("${prefix}.parquet"), emit: counts
    tuple val("${task.process}"), val('caveat'), eval('count_alleles.py --version'), emit: versions_caveat, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    prefix = task.ext.prefix ?: "${meta.id}"
    def args = task.ext.args ?: ''
    """
    count_alleles.py \\
        --merge ${parts} \\
        --out ${prefix}.parquet \\
        ${args}
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch ${prefix}.parquet
    """
}
