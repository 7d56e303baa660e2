process WASP_REMAP_PLAN {
    // The contig groups WASP_REMAP is scattered over, once per run (caveat.contig_groups):
    // the contigs with a read in some BAM (from the BAM indexes), in header order, filled up
    // to wasp_group_bp bases per group. Also checks every BAM's contigs against the .fai and
    // against each other, so WASP_REMAP needs no FASTA.
    tag "${meta.id}"
    label 'process_single'
    container 'ghcr.io/caveat-bench/caveat:0.1.0'

    input:
    // the i-th BAM and the i-th index land in bams/<i>/ (a `?` in a stageAs folder is the
    // file's 1-based index in its list: Nextflow TaskInputResolver.expandWildcards0), so each
    // index lies beside its BAM, and two samples' BAMs with one name do not collide; the
    // header and the index statistics are all that is read, not the records
    tuple val(meta), path(bams, stageAs: 'bams/?/*'), path(bais, stageAs: 'bams/?/*')
    path fai

    output:
    tuple val(meta), path('wasp_groups.tsv'), emit: groups
    tuple val("${task.process}"), val('caveat'), eval('wasp_remap.py --version'), emit: versions_caveat, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    wasp_remap.py \\
        --plan-groups ${bams} \\
        --fai ${fai} \\
        --out-groups wasp_groups.tsv \\
        ${args}
    """

    stub:
    """
    printf 'group_id\\tcontigs\\n' > wasp_groups.tsv
    cut -f 1 ${fai} | paste -sd, - | sed 's/^/g001\\t/' >> wasp_groups.tsv
    """
}
