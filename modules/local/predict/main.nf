process PREDICT {
    // Reference predictions of every regime's model(s) on the test chromosomes (windows
    // and union peaks), averaged over reverse complement and shifts — a GPU task.
    tag "${meta.id}"
    label 'process_gpu'
    container "${task.accelerator ? 'ghcr.io/caveat-bench/caveat-gpu:0.1.0' : 'ghcr.io/caveat-bench/caveat:0.1.0'}"

    input:
    tuple val(meta), path(windows), path(dataset_summary), path(peaks)
    tuple val(model_paths), path(model_dirs, arity: '1..*', stageAs: 'trained_?/*')   // a list even for one model
    tuple val(outside_metas), path(outside_files, arity: '0..*', stageAs: 'outside_?/*')   // outside models: none or more
    tuple path(fasta), path(fai)

    output:
    tuple val(meta), path('predictions.parquet'), emit: predictions
    tuple val(meta), path('predict.summary.json'), emit: summary
    tuple val("${task.process}"), val('caveat'), eval('predict.py --version'), emit: versions_caveat, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def regimes = meta.regimes.join(' ')
    // the outside models as a sheet of the staged files (caveat.outside_models.read_sheet reads the
    // model paths relative to the sheet, here the task folder)
    def outside_rows = outside_metas.withIndex().collect { m, i -> "${m.id},${outside_files[i]},${m.task_names.join(';')},${m.seq_len}" }
    def outside_sheet = outside_rows ? "printf '%s\\n' name,model,tasks,seq_len ${outside_rows.collect { r -> "'${r}'" }.join(' ')} > outside_models.csv" : ''
    def outside_arg = outside_rows ? '--outside-models outside_models.csv' : ''
    """
    # lay the staged model folders out as models/<regime>[/<cell_type>] (what --models expects)
    dests=(${model_paths.join(' ')})
    srcs=(${model_dirs.join(' ')})
    for i in "\${!dests[@]}"; do
        mkdir -p "models/\$(dirname "\${dests[\$i]}")"
        ln -s "\$PWD/\${srcs[\$i]}" "models/\${dests[\$i]}"
    done

    ${outside_sheet}
    predict.py \\
        --windows ${windows} \\
        --summary ${dataset_summary} \\
        --fasta ${fasta} \\
        --models models \\
        --peaks ${peaks} \\
        --regimes ${regimes} \\
        ${outside_arg} \\
        --threads ${task.cpus} \\
        --out predictions.parquet \\
        ${args}
    """

    stub:
    """
    touch predictions.parquet
    echo '{"rows": 0}' > predict.summary.json
    """
}
