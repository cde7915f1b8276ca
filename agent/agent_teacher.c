/*
 * agent_teacher.c: a site's check of an ONNX teacher against the job (agent_teacher.h).
 */
#include "agent_teacher.h"
#include "fileio.h"
#include "onnx_graph.h"

#include <stdlib.h>

int cnd_agent_onnx_teacher_check(const char *path, const uint8_t *data, size_t len,
                                 const char *prep, const cnd_job_spec_t *job, uint64_t memory_mb,
                                 size_t *mem_bytes)
{
    *mem_bytes = 0;
    uint8_t *own = NULL;
    int rc = 0;
    if (!data) {
        if ((rc = cnd_file_read(path, CND_ONNX_FILE_MAX, &own, &len))) return rc;
        data = own;
    }
    size_t limit = memory_mb > (SIZE_MAX >> 20) ? SIZE_MAX : (size_t)memory_mb << 20;
    cnd_onnx_teacher_info_t info;
    rc = cnd_onnx_teacher_check(&info, data, len, path, prep, limit);
    free(own);
    if (rc) return rc;
    cnd_shape_t want = {(int)job->in_c, (int)job->in_h, (int)job->in_w};
    /* the size decides, as for the logits (compress/onnx_student.c): a rank-2 (N, F) teacher
     * takes flattened samples */
    if (cnd_shape_size(info.in) != cnd_shape_size(want))
        return cnd_errf(CND_EINVAL, "%s takes %dx%dx%d inputs, the job's student %ux%ux%u", path,
                        info.in.c, info.in.h, info.in.w, job->in_c, job->in_h, job->in_w);
    if (info.classes != (int)job->classes)
        return cnd_errf(CND_EINVAL, "%s has %d outputs, the job has %u classes", path, info.classes,
                        job->classes);
    *mem_bytes = info.mem_bytes;
    return 0;
}
