/*
 * MODELS: training windows, one GPU task per training regime and replicate (single_task: one
 * per cell type and replicate), reference predictions, and variant scoring per model.
 * Replicates: models/<regime>/rep<k>[/<cell type>] with train_replicates > 1, else
 * models/<regime>[/<cell type>] (caveat.regimes.model_path); replicate k trains with
 * seed + 1000 (k - 1) (train.py --replicate).
 */

include { BUILD_DATASET  } from '../../../modules/local/build_dataset/main'
include { TRAIN          } from '../../../modules/local/train/main'
include { TRAIN_BASELINE } from '../../../modules/local/train_baseline/main'
include { PREDICT        } from '../../../modules/local/predict/main'
include { SCORE_VARIANTS } from '../../../modules/local/score_variants/main'
include { SCORE_VARIANTS_MERGE } from '../../../modules/local/score_variants_merge/main'

workflow MODELS {
    take:
    pseudobulk     // [meta(id: cell type), pseudobulk bigWig]
    peaks          // [meta, peaks.parquet]
    variant_tables // [meta, [variant_sets.parquet, variant_sets_stratum_matched.parquet]]
    cell_types     // list of cell types (samplesheet order)
    fasta          // [fasta, fai]
    regimes        // list of regimes to train
    blacklist      // path, or []
    score_vcf      // path of a VCF whose variants are scored too, or []
    contig_map     // path (VCF contig → FASTA contig), or []
    unmappable     // path: BED of regions that are not uniquely mappable, or []
    n_replicates   // int: train_replicates
    outside        // [meta(id: name, regime, outside: true, task_names, seq_len), model file] per outside model

    main:
    // targets in samplesheet cell-type order
    ch_dataset_in = pseudobulk
        .map { meta, bigwig -> [meta.id, bigwig] }
        .toList()
        .map { tracks -> [tracks] }   // combine concatenates list items: keep the list one element
        .combine(cell_types.map { names -> [names] })
        .map { tracks, names -> [names, names.collect { name -> tracks.find { track -> track[0] == name }[1] }] }
        .combine(peaks.map { _meta, parquet -> parquet })
        .map { names, bigwigs, peaks_parquet -> [[id: 'all'], names, bigwigs, peaks_parquet] }
    BUILD_DATASET(ch_dataset_in, fasta, blacklist, unmappable)

    // one training unit per regime and replicate; single_task: one per cell type and replicate
    // (id = train.py's summary name, model_path = caveat.regimes.model_path)
    ch_train_units = cell_types
        .flatMap { names ->
            regimes.collectMany { regime ->
                (1..n_replicates).collectMany { k ->
                    def rep_dir = n_replicates > 1 ? "/rep${k}" : ''
                    def rep_id = n_replicates > 1 ? ".rep${k}" : ''
                    regime == 'single_task'
                        ? names.collect { name -> [id: "single_task.${name}${rep_id}", regime: regime, cell_type: name, replicate: k, model_path: "single_task${rep_dir}/${name}"] }
                        : [[id: "${regime}${rep_id}", regime: regime, cell_type: null, replicate: k, model_path: "${regime}${rep_dir}"]]
                }
            }
        }
    ch_train_in = ch_train_units
        .combine(BUILD_DATASET.out.windows.map { _meta, windows, summary -> [windows, summary] })
    TRAIN(ch_train_in, fasta)

    // the model-free k-mer baseline (issue 18.6): one CPU task on the same windows; skipped with
    // train_baseline false (conf/modules.config ext.when), its channels then stay empty
    TRAIN_BASELINE(BUILD_DATASET.out.windows, fasta)

    ch_trained = TRAIN.out.model
        .toSortedList { a, b -> a[0].id <=> b[0].id }
        .map { models -> [models.collect { m -> m[0].model_path }, models.collect { m -> m[1] }] }
    ch_predict_in = BUILD_DATASET.out.windows
        .combine(peaks.map { _meta, parquet -> parquet })
        .map { _meta, windows, summary, peaks_parquet -> [[id: 'all', regimes: regimes], windows, summary, peaks_parquet] }
    // the outside models ride along in the one PREDICT task as two lists (metas, files), in
    // sheet order; toList() emits [] for an empty channel (unlike collect(), which emits
    // nothing: Nextflow docs, operators toList / collect), so PREDICT runs without any
    // the k-mer baseline joins them as its manifest (models/kmer_baseline/outside.json) describes
    // it, after the sheet's models: the local engine's order (caveat.outside_models.outside_models)
    ch_baseline = TRAIN_BASELINE.out.model.map { _meta, folder -> [manifestMeta(folder), manifestFile(folder)] }
    ch_outside = outside.toList()
        .map { models -> [models] }   // combine concatenates list items: keep each list one element
        .combine(ch_baseline.toList().map { models -> [models] })
        .flatMap { sheet, inrun -> sheet + inrun }
    ch_outside_all = ch_outside.toList()
        .map { models -> [models.collect { m -> m[0] }, models.collect { m -> m[1] }] }
    PREDICT(ch_predict_in, ch_trained, ch_outside_all, fasta)

    // one SCORE_VARIANTS task per model: each trained one and each outside one
    ch_score_in = TRAIN.out.model
        .mix(ch_outside)
        .combine(variant_tables.map { _meta, tables -> [tables] })   // one list element, not two
    SCORE_VARIANTS(ch_score_in, fasta, score_vcf, contig_map)

    // one merge, as the local engine writes them: variant_scores.parquet (+ vcf_scores.parquet) and
    // score_variants.summary.json from the per-model tables and summaries
    ch_merge_in = SCORE_VARIANTS.out.scores.map { _meta, parquet -> parquet }.toSortedList()
        .map { parquets -> [parquets] }   // combine concatenates list items: keep the list one element
        .combine(SCORE_VARIANTS.out.vcf_scores.map { _meta, parquet -> parquet }.toSortedList().map { parquets -> [parquets] })
        .combine(SCORE_VARIANTS.out.summary.map { _meta, json -> json }.toSortedList().map { jsons -> [jsons] })
        .map { tables, vcf_tables, summaries -> [[id: 'variant_scores'], tables, vcf_tables, summaries] }
    SCORE_VARIANTS_MERGE(ch_merge_in)

    emit:
    windows        = BUILD_DATASET.out.windows     // [meta, windows.parquet, build_dataset.summary.json]
    models         = TRAIN.out.model               // [meta(regime, cell_type, replicate, model_path), model folder]
    trained        = ch_trained                    // [model paths, model folders]
    train_summary  = TRAIN.out.summary             // [meta, train.<unit>.summary.json]
    baseline       = TRAIN_BASELINE.out.model      // [meta, models/kmer_baseline] (model.ts + outside.json)
    baseline_summary = TRAIN_BASELINE.out.summary  // [meta, train_baseline.summary.json]
    predictions    = PREDICT.out.predictions       // [meta, predictions.parquet]
    predict_summary = PREDICT.out.summary          // [meta, predict.summary.json]
    scores         = SCORE_VARIANTS_MERGE.out.scores       // [meta, variant_scores.parquet]
    vcf_scores     = SCORE_VARIANTS_MERGE.out.vcf_scores   // [meta, vcf_scores.parquet] (with params.score_vcf)
    score_summary  = SCORE_VARIANTS_MERGE.out.summary      // [meta, score_variants.summary.json]
}

// An in-run outside model's meta and file from its folder's outside.json (read as caveat.outside_models.read_manifest
// reads it): [meta, model file], the meta workflows/caveat.nf's outsideMeta builds for a sheet row.
def manifestMeta(folder) {
    def m = readManifest(folder)
    return [id: m.name, regime: m.name, cell_type: null, replicate: null, outside: true,
            task_names: m.cell_types, seq_len: m.seq_len as int]
}

def manifestFile(folder) {
    return folder.resolve(readManifest(folder).model as String)
}

// Path.splitJson() (nextflow/splitter/SplitterEx.groovy: static List splitJson(Path self, Map opts))
// gives a JSON object's entries as [key: k, value: v] maps (JsonSplitter.processObject, OBJECT_KEY /
// OBJECT_VALUE); the language server types it, where JsonSlurper.parseText is an unknown method
def readManifest(folder) {
    return folder.resolve('outside.json').splitJson().collectEntries { e -> [(e.key): e.value] }
}
