process SCORE_VARIANTS {
    // In-silico mutagenesis of every variant of the variant tables (depth-matched sets and the
    // stratum-matched Fig. 4B table) with one regime's model
    // (single_task: one cell type's model): REF vs ALT at the centre bin — a GPU task.
    // With params.score_vcf, that VCF's ALT alleles are scored too, into a table of their own
    // (vcf_scores, as the local engine keeps them apart from the benchmark's variant scores).
    tag "${meta.id}"
    label 'process_gpu'
    container "${task.accelerator ? 'ghcr.io/caveat-bench/caveat-gpu:0.1.0' : 'ghcr.io/caveat-bench/caveat:0.1.0'}"

    input:
    tuple val(meta), path(model_dir), path(variant_tables, arity: '1..*')
    tuple path(fasta), path(fai)
    path score_vcf
    path contig_map

    output:
    tuple val(meta), path("variant_scores.${prefix}.parquet"), emit: scores
    tuple val(meta), path("variant_scores.${prefix}.summary.json"), emit: summary
    tuple val(meta), path("vcf_scores.${prefix}.parquet"), emit: vcf_scores, optional: true
    tuple val("${task.process}"), val('caveat'), eval('score_variants.py --version'), emit: versions_caveat, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    prefix = task.ext.prefix ?: "${meta.id}"
    def args = task.ext.args ?: ''
    def cell_type = meta.cell_type ? "--cell-type ${meta.cell_type}" : ''
    // the replicate labels the rows (rep<k>) and, with --train-replicates > 1 (ext.args), the summary key
    def replicate = meta.replicate ? "--replicate ${meta.replicate}" : ''
    // the VCF's contig names → the FASTA's (read only with --vcf)
    def map_arg = contig_map ? "--contig-map ${contig_map}" : ''
    // an outside model (params.outside_models) is a file, not a train folder: its task map
    // (cell type per output, - for an unused one) and input length come from the sheet
    def model = meta.outside ? "${model_dir}" : "${model_dir}/model.pt"
    def outside_args = meta.outside ? "--task-names ${meta.task_names.join(' ')} --seq-len ${meta.seq_len}" : ''
    // one call: the VCF's scores go to their own table, the summary covers both (as one model's
    // entry of the local engine's score_variants.summary.json; SCORE_VARIANTS_MERGE joins them)
    def vcf_args = score_vcf ? "--vcf ${score_vcf} --out-vcf vcf_scores.${prefix}.parquet" : ''
    """
    score_variants.py \\
        --model ${model} \\
        --regime ${meta.regime} \\
        ${outside_args} \\
        ${cell_type} \\
        ${replicate} \\
        --fasta ${fasta} \\
        --variant-sets ${variant_tables.join(' ')} \\
        ${vcf_args} \\
        ${map_arg} \\
        --threads ${task.cpus} \\
        --out variant_scores.${prefix}.parquet \\
        --summary variant_scores.${prefix}.summary.json \\
        ${args}
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch variant_scores.${prefix}.parquet
    echo '{"rows": 0}' > variant_scores.${prefix}.summary.json
    """
}
