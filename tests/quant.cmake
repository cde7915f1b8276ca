# Tests of compress/quant*, compress/artifact* and the quantize/eval/export/bench commands.
cnd_test(test_quant LABEL unit LIBS cnd_compress)
cnd_test(test_artifact LABEL unit LIBS cnd_compress)
