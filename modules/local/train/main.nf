process TRAIN {
    // One training regime's model (single_task: one cell type's model), one replicate — a GPU task.
    tag "${meta.id}"
    label 'process_gpu'
    container "${task.accelerator ? 'ghcr.io/caveat-bench/caveat-gpu:0.1.0' : 'ghcr.io/caveat-bench/caveat:0.1.0'}"

    input:
    tuple val(meta), path(windows), path(dataset_summary)
    tuple path(fasta), path(fai)

    output:
    tuple val(meta), path("models/${meta.model_path}"), emit: model
    tuple val(meta), path("train.${prefix}.summary.json"), emit: summary
    tuple val("${task.process}"), val('caveat'), eval('train.py --version'), emit: versions_caveat, topic: versions
    tuple val("${task.process}"), val('torch'), eval('python3 -c "import torch; print(torch.__version__)"'), emit: versions_torch, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    // train.py keeps a resume checkpoint after every epoch (models/<model>/.tmp-resume/last.pt) and
    // continues from one it finds; a retry runs in a new work dir without it, so it starts over.
    prefix = task.ext.prefix ?: "${meta.id}"
    def args = task.ext.args ?: ''
    def cell_type = meta.cell_type ? "--cell-type ${meta.cell_type}" : ''
    def replicate = meta.replicate ? "--replicate ${meta.replicate}" : ''
    // train.py names its summary train.<regime>[.<cell type>][.rep<k>].summary.json (= meta.id)
    def rename = "${prefix}" == "${meta.id}" ? '' : "mv train.${meta.id}.summary.json train.${prefix}.summary.json"
    """
    train.py \\
        --windows ${windows} \\
        --summary ${dataset_summary} \\
        --fasta ${fasta} \\
        --regime ${meta.regime} \\
        ${cell_type} \\
        ${replicate} \\
        --threads ${task.cpus} \\
        --outdir . \\
        ${args}
    ${rename}
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    mkdir -p models/${meta.model_path}
    touch models/${meta.model_path}/model.pt models/${meta.model_path}/history.parquet
    echo '{"models": {}}' > train.${prefix}.summary.json
    """
}
