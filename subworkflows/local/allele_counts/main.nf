/*
 * ALLELE_COUNTS: the WASP remapping filter scattered per sample and per chromosome,
 * gathered per sample (filtered BAM + the filter's figures), then allele counting per sample.
 */

include { WASP_REMAP        } from '../../../modules/local/wasp_remap/main'
include { WASP_REMAP_GATHER } from '../../../modules/local/wasp_remap_gather/main'
include { COUNT_ALLELES     } from '../../../modules/local/count_alleles/main'

workflow ALLELE_COUNTS {
    take:
    samples   // [meta, bam, bai, peaks]
    chroms    // contig name
    fasta     // [fasta, fai]
    vcf       // [vcf, tbi]
    index     // [index files, prefix]
    contig_map   // path, or []

    main:
    ch_units = samples
        .map { meta, bam, bai, _peaks -> [meta, bam, bai] }
        .combine(chroms)
    WASP_REMAP(ch_units, fasta, vcf, index, contig_map)

    ch_gather = WASP_REMAP.out.bam
        .map { meta, _chrom, bam, _bai -> [meta, bam] }
        .groupTuple(sort: true)
        .join(WASP_REMAP.out.stats.groupTuple(sort: true))
    WASP_REMAP_GATHER(ch_gather)

    // every chromosome's task writes the donor's whole het-SNP table (read from the VCF): one is enough
    ch_het_snps = WASP_REMAP.out.het_snps
        .map { meta, _chrom, table -> [meta, table] }
        .groupTuple(sort: true)
        .map { meta, tables -> [meta, tables[0]] }
    COUNT_ALLELES(WASP_REMAP_GATHER.out.bam.join(ch_het_snps))

    emit:
    wasp_bam   = WASP_REMAP_GATHER.out.bam     // [meta, bam, bai]
    wasp_stats = WASP_REMAP_GATHER.out.stats   // [meta, stats.json]
    counts     = COUNT_ALLELES.out.counts      // [meta, counts/<sample>.parquet]
}
