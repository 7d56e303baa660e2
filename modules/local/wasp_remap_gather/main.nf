process WASP_REMAP_GATHER {
    // Gathers one sample's per-chromosome WASP output into what the local engine
    // writes: wasp/<sample>.bam (+ .bai) and wasp/<sample>.stats.json (figures summed).
    tag "${meta.id}"
    label 'process_low'
    container 'ghcr.io/caveat-bench/caveat:0.1.0'

    input:
    tuple val(meta), path(bams, stageAs: 'chroms/*'), path(stats, stageAs: 'chroms/*')

    output:
    tuple val(meta), path("${meta.id}.bam"), path("${meta.id}.bam.bai"), emit: bam
    tuple val(meta), path("${meta.id}.stats.json"), emit: stats
    tuple val("${task.process}"), val('samtools'), eval('samtools version | sed "1!d;s/^samtools //"'), emit: versions_samtools, topic: versions

    script:
    def args = task.ext.args ?: ''
    """
    # the parts are coordinate-sorted with the same header: merge keeps the sort order
    samtools merge ${args} -@ ${task.cpus} -c -p -o ${meta.id}.bam ${bams}
    samtools index -@ ${task.cpus} ${meta.id}.bam

    # the filter's figures are counts: sum them over chromosomes (keys sorted, as caveat.io writes)
    python3 - ${stats} > ${meta.id}.stats.json <<'PY'
import json, sys
total = {}
for path in sys.argv[1:]:
    for key, value in json.load(open(path)).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            total[key] = total.get(key, 0) + value
        else:
            total.setdefault(key, value)
print(json.dumps(total, indent=2, sort_keys=True))
PY
    """

    stub:
    """
    touch ${meta.id}.bam ${meta.id}.bam.bai
    echo '{"sample": "${meta.id}"}' > ${meta.id}.stats.json
    """
}
