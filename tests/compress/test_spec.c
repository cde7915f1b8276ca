/* test_spec.c: the architecture spec parser, good specs and positioned errors. */
#include "check.h"
#include "error.h"
#include "model.h"
#include "spec.h"

#include <string.h>

static void expect_error(const char *spec, const char *needle)
{
    cnd_layer_t l[CND_SPEC_MAX_LAYERS];
    int n = cnd_spec_parse(spec, l, CND_SPEC_MAX_LAYERS);
    CHECK_EQ_INT(n, CND_EINVAL);
    if (!strstr(cnd_err_detail(), needle))
        fprintf(stderr, "spec '%s': detail '%s' lacks '%s'\n", spec, cnd_err_detail(), needle);
    CHECK(strstr(cnd_err_detail(), needle) != NULL);
}

int main(void)
{
    cnd_layer_t l[CND_SPEC_MAX_LAYERS];
    const char *cnn = "conv2d(32,3,pad=1) relu maxpool(2) conv2d(64,3,pad=1) relu maxpool(2) "
                      "flatten dense(128) relu dense(10)";
    CHECK_EQ_INT(cnd_spec_parse(cnn, l, CND_SPEC_MAX_LAYERS), 10);
    CHECK_EQ_INT(l[0].type, CND_L_CONV2D);
    CHECK_EQ_INT(l[0].p.conv.oc, 32);
    CHECK_EQ_INT(l[0].p.conv.k, 3);
    CHECK_EQ_INT(l[0].p.conv.pad, 1);
    CHECK_EQ_INT(l[0].p.conv.stride, 1);
    CHECK_EQ_INT(l[2].type, CND_L_MAXPOOL);
    CHECK_EQ_INT(l[2].p.pool.stride, 2);
    CHECK_EQ_INT(l[9].p.dense.out, 10);
    CHECK_EQ_INT(cnd_spec_parse("  conv2d( 8 , 5 , stride=2 , pad=2 )  bn gap dense(3) ", l, 64),
                 4);
    CHECK_EQ_INT(l[0].p.conv.stride, 2);
    CHECK_EQ_INT(l[1].type, CND_L_BATCHNORM);
    CHECK_EQ_INT(cnd_spec_parse("batchnorm(eps=0.001,momentum=0.01) avgpool(3,stride=1)", l, 64),
                 2);
    CHECK_NEAR(l[0].p.bn.eps, 0.001, 1e-9);
    CHECK_EQ_INT(l[1].p.pool.stride, 1);

    expect_error("", "position 1");
    expect_error("dense(10) foo", "position 11: unknown layer 'foo'");
    expect_error("dense(10", "position 9: expected ',' or ')'");
    expect_error("dense()", "position 7: expected a number");
    expect_error("dense(-3)", "dense outputs must be an integer");
    expect_error("dense(2.5)", "dense outputs must be an integer");
    /* numbers no integer holds: refused without casting them (that would be undefined) */
    expect_error("dense(1e300)", "dense outputs must be an integer");
    expect_error("dense(-1e19)", "dense outputs must be an integer");
    expect_error("dense(-nan)", "dense outputs must be an integer");
    expect_error("conv2d(8,3,pad=nan)", "pad must be an integer");
    expect_error("conv2d(8,+inf)", "conv2d kernel must be an integer");
    expect_error("maxpool(2,stride=-inf)", "stride must be an integer");
    expect_error("conv2d(8)", "conv2d takes");
    expect_error("conv2d(8,3,pads=1)", "has no argument 'pads'");
    expect_error("relu(1)", "relu takes no arguments");
    expect_error("dense(10)x", "position 10");
    expect_error("maxpool(2,k=3)", "no argument 'k'");
    expect_error("conv2d(8,3,stride=0)", "stride must be");
    expect_error("dense(10) , relu", "position 11");

    /* Shape errors come from model building and name the layer. */
    cnd_model_t *m = NULL;
    CHECK_EQ_INT(cnd_model_new(&m, "conv2d(4,9) flatten dense(2)", (cnd_shape_t){1, 5, 5}, 1),
                 CND_EINVAL);
    CHECK(strstr(cnd_err_detail(), "layer 1 (conv2d)") != NULL);
    CHECK_EQ_INT(cnd_model_new(&m, "conv2d(4,3)", (cnd_shape_t){1, 5, 5}, 1), CND_EINVAL);
    CHECK(strstr(cnd_err_detail(), "last layer") != NULL);
    CHECK(m == NULL);
    /* Canonical spec round trip. */
    CHECK_EQ_INT(cnd_model_new(&m, " conv(8,3,pad=1)  bn relu maxpool(2) flatten dense(10)",
                               (cnd_shape_t){1, 8, 8}, 1),
                 0);
    CHECK(m && !strcmp(m->spec, "conv2d(8,3,pad=1) batchnorm relu maxpool(2) flatten dense(10)"));
    CHECK_EQ_INT(m->num_params, 8 * 9 + 8 + 16 + 8 * 16 * 10 + 10);
    CHECK_EQ_INT(m->num_state, 16);
    CHECK_EQ_INT(cnd_model_macs(m), 8 * 9 * 64 + 8 * 16 * 10);
    cnd_model_destroy(&m);
    cnd_model_destroy(&m);
    return check_result("test_spec");
}
