"""Which `speaker.method` values read the LipSyncNet checkpoint that `lipsync_train` writes.

Both the speaker stage (its cache key holds the checkpoint's hash only for these) and the DAG writer
(`speaker` depends on `artifacts/lipsyncnet` only for these, so `first_face` never waits for
`lipsync_train`) read this one list; a module of its own so the DAG writer imports no image code.
"""

LEARNED_METHODS = ("auto", "lipsyncnet", "fused")
