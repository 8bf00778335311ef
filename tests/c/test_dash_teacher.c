/* test_dash_teacher.c - the dashboard's model of a run trained on a teacher
 * source (bitlab.dataset{teacher = ...}): a step record's teacher_data
 * {kept, rejected, tokens_per_s} is what the header's "teacher" segment
 * shows; records without it leave it as it was, and a run on a corpus or a
 * dataset has none (NaN: no segment). */
#define _XOPEN_SOURCE 700
#include <math.h>
#include <string.h>

#include "check.h"
#include "ui/dash_internal.h"

int main(void) {
    DashState s;
    dash_state_init(&s);
    CHECK(isnan(s.teacher[0]) && isnan(s.teacher[1]) && isnan(s.teacher[2]),
          "no teacher_data yet: no header segment");
    dash_state_line(&s, "{\"step\":1,\"total\":2.5}", 0.0);
    CHECK(isnan(s.teacher[0]), "a record without teacher_data: still none");
    dash_state_line(&s,
                    "{\"step\":2,\"total\":2.4,\"teacher_data\":{\"examples\":40,\"served\":8,"
                    "\"answers\":48,\"kept\":40,\"rejected\":8,\"teacher_tokens\":3000,"
                    "\"tokens_per_s\":812.5,\"epoch\":0}}",
                    0.0);
    CHECK(s.teacher[0] == 40 && s.teacher[1] == 8 && s.teacher[2] == 812.5,
          "kept %g, rejected %g, tok/s %g from the record", s.teacher[0], s.teacher[1],
          s.teacher[2]);
    dash_state_line(&s, "{\"step\":3,\"total\":2.3}", 0.0);
    CHECK(s.teacher[0] == 40, "the last figures stay until the next record carrying them");
    dash_state_free(&s);
    if (failures) fprintf(stderr, "test_dash_teacher: %d failure(s)\n", failures);
    else printf("test_dash_teacher: ok\n");
    return failures != 0;
}
