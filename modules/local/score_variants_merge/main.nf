process SCORE_VARIANTS_MERGE {
    // The per-model score tables (one per regime; single_task: per cell type) and their one-model
    // summaries → the local engine's variant_scores.parquet (+ vcf_scores.parquet with
    // params.score_vcf) and score_variants.summary.json, sorted and summarized by the same code.
    tag "${meta.id}"
    label 'process_single'
    container 'ghcr.io/caveat-bench/caveat:0.1.0'

    input:
    tuple val(meta), path(tables, stageAs: 'parts/*'), path(vcf_tables, stageAs: 'vcf_parts/*'), path(summaries, stageAs: 'summaries/*')

    output:
    tuple val(meta), path("variant_scores.parquet"), emit: scores
    tuple val(meta), path("vcf_scores.parquet"), emit: vcf_scores, optional: true
    tuple val(meta), path("score_variants.summary.json"), emit: summary
    tuple val("${task.process}"), val('caveat'), eval('score_variants.py --version'), emit: versions_caveat, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def vcf_args = vcf_tables ? "--merge-vcf ${vcf_tables} --out-vcf vcf_scores.parquet" : ''
    """
    score_variants.py \\
        --merge ${tables} \\
        ${vcf_args} \\
        --model-summaries ${summaries} \\
        --out variant_scores.parquet \\
        --summary score_variants.summary.json \\
        ${args}
    """

    stub:
    """
    touch variant_scores.parquet
    echo '{"rows": 0, "models": 0, "skipped": 0, "by_model": {}}' > score_variants.summary.json
    """
}
