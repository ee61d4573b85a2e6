-- datafusion-metaxy quickstart: the video pipeline end to end, on the embedded default store
-- (a Delta store under ./.metaxy/store). Run from the repository root:
--   cargo run --bin metaxy-sql -- --features examples/video/features.toml -f examples/video/quickstart.sql
-- Every statement is plain DataFusion SQL: `ctx.sql` on a session from `new_context` runs it
-- as it is (the `\` lines are the shell's meta-commands).

\echo == 0. Start from an empty store
-- Start from an empty store, so the output is the same every run.
SELECT feature FROM metaxy_drop_feature('example/video');
SELECT feature FROM metaxy_drop_feature('example/crop');
SELECT feature FROM metaxy_drop_feature('example/face_detection');
SELECT feature FROM metaxy_drop_feature('example/stt');

\echo == The feature graph
\features

\echo == 1. Write root metadata for three videos
-- 1. Root metadata: one row per video with a version per field (e.g. a content hash). The
--    system columns (feature version, provenance, timestamps) are filled by the store.
INSERT INTO example__video (video_id, metaxy_provenance_by_field)
SELECT video_id, named_struct('audio', audio_version, 'frames', frames_version)
FROM 'examples/video/videos.csv';

\echo == 2. resolve_update('example/crop'): everything is new
-- 2. What does each downstream feature need to compute? Everything is new.
SELECT video_id, metaxy_change, metaxy_provenance FROM resolve_update('example/crop') ORDER BY video_id;

\echo == 3. Record the processed samples of crop, face_detection, stt
-- 3. Compute (here: pretend) and record the processed samples, feature by feature.
INSERT INTO example__crop (video_id, metaxy_provenance_by_field)
SELECT video_id, metaxy_provenance_by_field FROM resolve_update('example/crop', 'new');
INSERT INTO example__face_detection (video_id, metaxy_provenance_by_field)
SELECT video_id, metaxy_provenance_by_field FROM resolve_update('example/face_detection', 'new');
INSERT INTO example__stt (video_id, metaxy_provenance_by_field)
SELECT video_id, metaxy_provenance_by_field FROM resolve_update('example/stt', 'new');

\echo == 4. New audio for v2: only what depends on audio is stale
-- 4. New audio for v2 only: crop (it uses audio) and stt are stale for v2; face_detection
--    reads only crop's frames, so it is not affected.
INSERT INTO example__video (video_id, metaxy_provenance_by_field)
VALUES ('v2', named_struct('audio', 'a2-NEW', 'frames', 'f2-0e41'));
SELECT 'example/crop' AS feature, video_id, metaxy_change FROM resolve_update('example/crop')
UNION ALL SELECT 'example/stt', video_id, metaxy_change FROM resolve_update('example/stt')
UNION ALL SELECT 'example/face_detection', video_id, metaxy_change FROM resolve_update('example/face_detection')
ORDER BY feature, video_id;
INSERT INTO example__crop (video_id, metaxy_provenance_by_field)
SELECT video_id, metaxy_provenance_by_field FROM resolve_update('example/crop', 'stale');
INSERT INTO example__stt (video_id, metaxy_provenance_by_field)
SELECT video_id, metaxy_provenance_by_field FROM resolve_update('example/stt', 'stale');
SELECT 'example/face_detection' AS feature, count(*) AS to_recompute FROM resolve_update('example/face_detection');

\echo == 5. stt's code version 1 -> 2: every stt sample is new, crop untouched
-- 5. The speech-to-text code changes (transcription code_version 1 -> 2): its feature version
--    changes, so every stt sample is new for the new version; nothing else is affected.
SELECT * FROM metaxy_load_features('examples/video/features_v2.toml');
SELECT 'example/stt' AS feature, video_id, metaxy_change FROM resolve_update('example/stt')
UNION ALL SELECT 'example/crop', video_id, metaxy_change FROM resolve_update('example/crop')
ORDER BY feature, video_id;
