process SIMULATE {
    // The simulated study `-profile test` runs on (`caveat simulate`): genome and its bowtie2
    // index, phased donor genotypes, aligned BAMs, peaks and a samplesheet whose relative paths
    // resolve against its own folder; the planted truth beside them. One folder output, so an
    // object-store work dir (S3, GCS) uploads every file the samplesheet names.
    tag "${preset}:${seed}"
    label 'process_low'
    container 'ghcr.io/caveat-bench/caveat:0.1.0'

    input:
    val preset
    val seed

    output:
    path 'study', emit: study
    tuple val("${task.process}"), val('caveat'), eval('simulate.py --version'), emit: versions_caveat, topic: versions
    tuple val("${task.process}"), val('bowtie2'), eval('bowtie2 --version 2>&1 | head -n 1 | sed "s/^.*version //"'), emit: versions_bowtie2, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    simulate.py \\
        --preset ${preset} \\
        --seed ${seed} \\
        --threads ${task.cpus} \\
        --out study \\
        ${args}
    """

    stub:
    // the shapes PREPARE_INPUTS reads: a valid samplesheet naming files that exist, a .fai
    // with contigs to scatter over, the VCF and its index, a bowtie2 index prefix `genome`
    """
    mkdir -p study/bams study/peaks
    printf 'sample,donor,cell_type,bam,peaks\\n' > study/samplesheet.csv
    for donor in D1 D2; do
        for ct in ctA ctB; do
            touch study/bams/\${donor}_\${ct}.bam study/bams/\${donor}_\${ct}.bam.bai
            printf '%s_%s,%s,%s,bams/%s_%s.bam,peaks/%s.bed\\n' \$donor \$ct \$donor \$ct \$donor \$ct \$ct >> study/samplesheet.csv
        done
    done
    touch study/peaks/ctA.bed study/peaks/ctB.bed
    printf '>chr1\\nACGT\\n>chr2\\nACGT\\n' > study/genome.fa
    printf 'chr1\\t4\\t6\\t4\\t5\\nchr2\\t4\\t17\\t4\\t5\\n' > study/genome.fa.fai
    touch study/genotypes.vcf.gz study/genotypes.vcf.gz.tbi
    touch study/genome.1.bt2 study/genome.2.bt2 study/genome.3.bt2 study/genome.4.bt2 study/genome.rev.1.bt2 study/genome.rev.2.bt2
    echo '{"preset": "${preset}", "seed": ${seed}}' > study/simulate.summary.json
    """
}
