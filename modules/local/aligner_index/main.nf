process ALIGNER_INDEX {
    // Builds the aligner index WASP remaps with, when params.aligner_index is not given.
    tag "${fasta.baseName}"
    label 'process_medium'
    container 'ghcr.io/caveat-bench/caveat:0.1.0'

    input:
    path fasta
    val aligner

    output:
    path 'index/*', emit: index
    tuple val("${task.process}"), val('bowtie2'), eval('bowtie2 --version 2>&1 | head -n 1 | sed "s/^.*version //"'), emit: versions_bowtie2, topic: versions
    tuple val("${task.process}"), val('bwa'), eval('bwa 2>&1 | sed -n "s/^Version: //p"'), emit: versions_bwa, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def prefix = fasta.baseName
    if (aligner == 'bwa') {
        """
        mkdir -p index
        bwa index ${args} -p index/${prefix} ${fasta}
        """
    } else {
        """
        mkdir -p index
        bowtie2-build ${args} --threads ${task.cpus} --seed 0 ${fasta} index/${prefix}
        """
    }

    stub:
    def prefix = fasta.baseName
    """
    mkdir -p index
    touch index/${prefix}.1.bt2
    """
}
