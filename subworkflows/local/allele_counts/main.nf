/*
 * ALLELE_COUNTS: every donor's het sites from the VCF (once), the WASP remapping filter
 * scattered per sample and per group of contigs (WASP_REMAP_PLAN, once per run: the contigs
 * with reads, in header order, up to wasp_group_bp bases per group), gathered per sample
 * (filtered BAM + the filter's figures), then allele counting per sample.
 */

include { WASP_REMAP_SITES  } from '../../../modules/local/wasp_remap_sites/main'
include { WASP_REMAP_PLAN   } from '../../../modules/local/wasp_remap_plan/main'
include { WASP_REMAP        } from '../../../modules/local/wasp_remap/main'
include { WASP_REMAP_GATHER } from '../../../modules/local/wasp_remap_gather/main'
include { WASP_REMAP_SUMMARY } from '../../../modules/local/wasp_remap_summary/main'
include { COUNT_ALLELES     } from '../../../modules/local/count_alleles/main'
include { COUNT_ALLELES_SUMMARY } from '../../../modules/local/count_alleles_summary/main'

workflow ALLELE_COUNTS {
    take:
    samples      // [meta, bam, bai, peaks]
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

    // one plan for the run, from every BAM's index (sorted by sample: stable task inputs for
    // -resume); it also checks the BAMs' contigs against the .fai, so WASP_REMAP needs no FASTA
    ch_plan_in = samples
        .map { meta, bam, bai, _peaks -> [meta.id, bam, bai] }
        .toSortedList { a, b -> a[0] <=> b[0] }
        .map { rows -> [[id: 'wasp_groups'], rows.collect { row -> row[1] }, rows.collect { row -> row[2] }] }
    WASP_REMAP_PLAN(ch_plan_in, fasta.map { _fa, fai -> fai })
    // [[group_id, [contig, …]], …]: one value (toList), the same groups for every sample
    ch_groups = WASP_REMAP_PLAN.out.groups
        .map { _meta, tsv -> tsv }
        .splitCsv(sep: '\t', header: true)
        .map { row -> [row.group_id, row.contigs.tokenize(',')] }
        .toList()

    // one task per sample × group. The sample's key carries its number of groups
    // (groupKey(meta, n)): groupTuple then emits a sample's parts as soon as its n-th arrives,
    // so its gather starts while other samples still run, instead of after every WASP_REMAP
    // task (nextflow-io/nextflow GroupTupleOp.collect: `final sz = size ?: sizeBy(key)`, and
    // sizeBy reads GroupKey.getGroupSize(); docs/reference/operator.mdx, groupTuple: "you can
    // use the built-in groupKey() function, which allows you to define a different expected
    // size for each group"; docs/snippets/grouptuple-groupkey.nf unwraps it with
    // getGroupTarget()). A GroupKey equals its target (GroupKey.equals), so the join below,
    // on plain meta maps, is unaffected.
    ch_units = samples
        .map { meta, bam, bai, _peaks -> [meta, bam, bai] }
        .combine(ch_groups.map { groups -> [groups] })   // combine concatenates list items: keep the list one element
        .flatMap { meta, bam, bai, groups ->
            groups.collect { group_id, contigs -> [meta, bam, bai, group_id, contigs] }
        }
    WASP_REMAP(ch_units, ch_sites, index)

    // the gather orders the parts by the BAM header's contigs itself: sorting here only
    // keeps the task's inputs (and so -resume) stable
    ch_gather = WASP_REMAP.out.bam
        .map { meta, group_id, bam, _bai -> [meta, group_id, bam] }
        .join(WASP_REMAP.out.stats, by: [0, 1])
        .combine(ch_groups.map { groups -> groups.size() })
        .map { meta, _group_id, bam, stats, n_groups -> [groupKey(meta, n_groups), bam, stats] }
        .groupTuple(sort: true)
        .map { key, bams, stats -> [key.getGroupTarget(), bams, stats] }
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
