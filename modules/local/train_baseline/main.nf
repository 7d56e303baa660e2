process TRAIN_BASELINE {
    // The model-free k-mer ridge baseline (models/kmer_baseline: model.ts + its outside.json manifest) — a CPU task.
    tag "${meta.id}"
    label 'process_medium'
    container 'ghcr.io/caveat-bench/caveat:0.1.0'

    input:
    tuple val(meta), path(windows), path(dataset_summary)
    tuple path(fasta), path(fai)

    output:
    tuple val(meta), path("models/kmer_baseline"), emit: model
    tuple val(meta), path("train_baseline.summary.json"), emit: summary
    tuple val("${task.process}"), val('caveat'), eval('train_baseline.py --version'), emit: versions_caveat, topic: versions
    tuple val("${task.process}"), val('torch'), eval('python3 -c "import torch; print(torch.__version__)"'), emit: versions_torch, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    train_baseline.py \\
        --windows ${windows} \\
        --summary ${dataset_summary} \\
        --fasta ${fasta} \\
        --outdir . \\
        ${args}
    """

    stub:
    """
    mkdir -p models/kmer_baseline
    touch models/kmer_baseline/model.ts models/kmer_baseline/coefficients.parquet models/kmer_baseline/fit_grid.parquet
    echo '{"name": "kmer_baseline", "model": "model.ts", "task_names": [], "cell_types": [], "seq_len": 1344}' > models/kmer_baseline/outside.json
    echo '{"trained": true}' > train_baseline.summary.json
    """
}
