process BUILD_DATASET {
    // 1344 bp windows (stride 192) × centre-bin insertion targets per cell type, split by chromosome.
    tag "${meta.id}"
    label 'process_medium'
    container 'ghcr.io/caveat-bench/caveat:0.1.0'

    input:
    tuple val(meta), val(cell_types), path(bigwigs, stageAs: 'insertions/*'), path(peaks)
    tuple path(fasta), path(fai)
    path blacklist
    path unmappable, stageAs: 'unmappable/*'

    output:
    tuple val(meta), path('windows.parquet'), path('build_dataset.summary.json'), emit: windows
    tuple val("${task.process}"), val('caveat'), eval('build_dataset.py --version'), emit: versions_caveat, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def blacklist_arg = blacklist ? "--blacklist ${blacklist}" : ''
    def unmappable_arg = unmappable ? "--unmappable-bed ${unmappable}" : ''
    """
    build_dataset.py \\
        --fasta ${fasta} \\
        --bigwigs ${bigwigs} \\
        --cell-types ${cell_types.join(' ')} \\
        --peaks ${peaks} \\
        ${blacklist_arg} \\
        ${unmappable_arg} \\
        --out windows.parquet \\
        ${args}
    """

    stub:
    """
    touch windows.parquet
    echo '{"windows": 0, "cell_types": []}' > build_dataset.summary.json
    """
}
