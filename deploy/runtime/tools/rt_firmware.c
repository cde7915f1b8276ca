/*
 * rt_firmware.c: a minimal bare-metal application for measuring the runtime's real footprint
 * on a Cortex-M4: the artifact compiled in as a C array (condenser export --c-array, symbols
 * cnd_model / cnd_model_len), a static arena, load + self-test at start-up, and one inference
 * per call of cnd_fw_infer(). Linked with newlib-nano and nosys stubs; not meant to run as is
 * (it has no vector table or clock set-up), only to be sized.
 */
#include "cnd_rt.h"

#include <stddef.h>
#include <stdint.h>

#ifndef CND_FW_ARENA
#define CND_FW_ARENA (80 * 1024)
#endif

extern const uint8_t cnd_model[];
extern const size_t cnd_model_len;

static uint8_t s_arena[CND_FW_ARENA];
static cnd_rt_model_t *s_model;

int cnd_fw_infer(const uint8_t *pixels, int8_t *logits);
int cnd_fw_infer(const uint8_t *pixels, int8_t *logits)
{
    if (!s_model) return -1;
    cnd_rt_run_u8(s_model, logits, pixels);
    return (int)cnd_rt_argmax(s_model, logits);
}

int main(void)
{
    if (cnd_rt_load(&s_model, cnd_model, cnd_model_len, s_arena, sizeof s_arena, NULL)) return 1;
    if (cnd_rt_selftest(s_model, NULL)) {
        s_model = NULL; /* never run a model whose bits differ on this device */
        return 2;
    }
    return 0;
}
