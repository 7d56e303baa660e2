process REPORT {
    // One self-contained HTML report (figures embedded) from the run's tables and summaries,
    // read from a results folder laid out as the local engine's outdir.
    tag "${meta.id}"
    label 'process_single'
    container 'ghcr.io/caveat-bench/caveat:0.1.0'

    input:
    tuple val(meta), path(tables, stageAs: 'results/*'), path(wasp_stats, stageAs: 'results/wasp/*')
    tuple val(model_paths), path(model_dirs, arity: '1..*', stageAs: 'trained_?/*')   // a list even for one model

    output:
    tuple val(meta), path('report.html'), emit: html
    tuple val(meta), path('report.summary.json'), emit: summary
    tuple val("${task.process}"), val('caveat'), eval('report.py --version'), emit: versions_caveat, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    # training histories as results/models/<regime>[/<cell_type>]/history.parquet
    dests=(${model_paths.join(' ')})
    srcs=(${model_dirs.join(' ')})
    for i in "\${!dests[@]}"; do
        mkdir -p "results/models/\$(dirname "\${dests[\$i]}")"
        ln -s "\$PWD/\${srcs[\$i]}" "results/models/\${dests[\$i]}"
    done

    report.py \\
        --metrics results/metrics.parquet \\
        --dir results \\
        --out report.html \\
        ${args}
    """

    stub:
    """
    echo '<html><body>stub</body></html>' > report.html
    echo '{"figures": 0}' > report.summary.json
    """
}
