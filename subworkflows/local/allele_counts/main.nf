/*
 * ALLELE_COUNTS: every donor's het sites from the VCF (once), the WASP remapping filter
 * scattered per sample and per chromosome, gathered per sample (filtered BAM + the
 * filter's figures), then allele counting per sample.
 */

include { WASP_REMAP_SITES  } from '../../../modules/local/wasp_remap_sites/main'
include { WASP_REMAP        } from '../../../modules/local/wasp_remap/main'
include { WASP_REMAP_GATHER } from '../../../modules/local/wasp_remap_gather/main'
include { WASP_REMAP_SUMMARY } from '../../../modules/local/wasp_remap_summary/main'
include { COUNT_ALLELES     } from '../../../modules/local/count_alleles/main'
include { COUNT_ALLELES_SUMMARY } from '../../../modules/local/count_alleles_summary/main'

workflow ALLELE_COUNTS {
    take:
    samples      // [meta, bam, bai, peaks]
    chroms       // contig name
    fasta        // [fasta, fai]
    vcf          // [vcf, tbi]
    index        // [index files, prefix]
    contig_map   // path, or []

    main:
    // donors sorted: het_snps.parquet is sorted by donor whatever the order, and a stable
    // order keeps the task's inputs (and so -resume) stable
    ch_donors = samples
        .map { meta, _bam, _bai, _peaks -> meta.donor }
        .unique()
        .toSortedList()
        .map { donors -> [[id: 'het_sites'], donors] }
    WASP_REMAP_SITES(ch_donors, fasta, vcf, contig_map)
    // a value channel already (every input of WASP_REMAP_SITES is a value): no `.first()`
    ch_sites = WASP_REMAP_SITES.out.sites
        .map { _meta, snps, indels -> [snps, indels] }

    ch_units = samples
        .map { meta, bam, bai, _peaks -> [meta, bam, bai] }
        .combine(chroms)
    WASP_REMAP(ch_units, fasta, ch_sites, index)

    // the gather orders the parts by the BAM header's contigs itself: sorting here only
    // keeps the task's inputs (and so -resume) stable
    ch_gather = WASP_REMAP.out.bam
        .map { meta, _chrom, bam, _bai -> [meta, bam] }
        .groupTuple(sort: true)
        .join(WASP_REMAP.out.stats.groupTuple(sort: true))
    WASP_REMAP_GATHER(ch_gather)

    ch_wasp_summary_in = WASP_REMAP_GATHER.out.stats
        .map { _meta, stats -> stats }
        .toSortedList()
        .map { stats -> [stats] }   // combine concatenates list items: keep the list one element
        .combine(WASP_REMAP_SITES.out.summary.map { _meta, json -> json })
        .map { stats, sites -> [[id: 'wasp_remap'], stats, sites] }
    WASP_REMAP_SUMMARY(ch_wasp_summary_in)

    COUNT_ALLELES(WASP_REMAP_GATHER.out.bam, ch_sites.map { snps, _indels -> snps })
    ch_count_summary_in = COUNT_ALLELES.out.counts
        .map { _meta, parquet -> parquet }
        .toSortedList()
        .map { parquets -> [[id: 'count_alleles'], parquets] }
    COUNT_ALLELES_SUMMARY(ch_count_summary_in)

    emit:
    het_snps   = WASP_REMAP_SITES.out.sites.map { meta, snps, _indels -> [meta, snps] }   // [meta, het_snps.parquet]
    het_indels = WASP_REMAP_SITES.out.sites.map { meta, _snps, indels -> [meta, indels] } // [meta, het_indels.parquet]
    wasp_bam   = WASP_REMAP_GATHER.out.bam     // [meta, bam, bai]
    wasp_stats = WASP_REMAP_GATHER.out.stats   // [meta, stats.json]
    counts     = COUNT_ALLELES.out.counts      // [meta, counts/<sample>.parquet]
    summaries  = WASP_REMAP_SUMMARY.out.summary.mix(COUNT_ALLELES_SUMMARY.out.summary)   // [meta, <step>.summary.json]
}
