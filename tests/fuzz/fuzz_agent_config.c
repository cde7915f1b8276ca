/*
 * fuzz_agent_config.c: the site agent's INI configuration (agent/agent_config.c, over Debian's
 * inih), read from a memory file (fuzz.h) as `condenser agent --config FILE` reads it. Seeds in
 * corpus/agent_config/ follow docs/site-operator-guide.md.
 *
 * A configuration that loads must hold what agent_config.h promises: every required field set,
 * NUL-terminated strings, numbers inside their ranges, a valid node name.
 */
#include "agent_config.h"
#include "fuzz.h"

static void s_check(const cnd_agent_config_t *c)
{
    fuzz_note("config loaded");
    if (!c->name[0] || !c->data[0] || !c->key[0] || !c->certificate[0] || !c->endpoint[0] ||
        !c->ca_cert[0] || !c->ca_crl[0] || !c->state[0] || !c->work[0])
        abort();
    if (!memchr(c->name, 0, sizeof c->name) || !memchr(c->data, 0, sizeof c->data) ||
        !memchr(c->endpoint, 0, sizeof c->endpoint))
        abort();
    if (!(c->validation >= 0 && c->validation <= 0.9) || c->threads < 1 || c->threads > 64 ||
        c->memory_mb < 64 || c->max_model_mb < 1)
        abort();
    if (c->n_teachers < 0 || c->n_teachers > CND_AGENT_TEACHERS_MAX) abort();
    for (int i = 0; i < c->n_teachers; i++)
        if (cnd_agent_config_teacher(c, c->teacher_name[i]) == NULL) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cnd_agent_config_t *c = malloc(sizeof *c);
    if (!c) abort();
    if (cnd_agent_config_load(c, fuzz_file(0, data, size)) == 0) s_check(c);
    fuzz_touch_error();
    free(c);
    return 0;
}
