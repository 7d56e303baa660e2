/*
 * IMBALANCE: allele counts gathered per cell type → allelic imbalance test → the
 * imbalanced (positive) set and balanced negatives matched on read depth.
 */

include { CALL_IMBALANCE  } from '../../../modules/local/call_imbalance/main'
include { MATCH_NEGATIVES } from '../../../modules/local/match_negatives/main'

workflow IMBALANCE {
    take:
    counts       // [meta, counts parquet] per sample and chromosome
    cell_types   // list of cell types (samplesheet order)
    peaks        // [meta, peaks.parquet]: each cell type's own peaks (its testing family) and the strata
    blacklist    // path, or []: het sites in these artefact regions are not tested

    main:
    ch_counts = counts
        .map { _meta, parquet -> parquet }
        .toSortedList()
        .map { parquets -> [parquets] }   // combine concatenates list items: keep the list one element
        .combine(cell_types.map { names -> [names] })
        .map { parquets, names -> [[id: 'all'], parquets, names] }
    CALL_IMBALANCE(ch_counts, peaks.map { _meta, parquet -> parquet }, blacklist)

    MATCH_NEGATIVES(CALL_IMBALANCE.out.imbalance, peaks.map { _meta, parquet -> parquet })

    emit:
    imbalance    = CALL_IMBALANCE.out.imbalance       // [meta, imbalance.parquet]
    variant_sets = MATCH_NEGATIVES.out.variant_sets   // [meta, variant_sets.parquet]
    stratum_matched = MATCH_NEGATIVES.out.stratum_matched   // [meta, variant_sets_stratum_matched.parquet]
    summaries    = CALL_IMBALANCE.out.summary.mix(MATCH_NEGATIVES.out.summary)
}
