"""Model precision: fp16 weights upcast at load (:mod:`.upcast`) and static int8 quantisation
gated on agreement with the float model (:mod:`.int8`)."""
