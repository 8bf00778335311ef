/* plan_report.h - a memory plan (plan.h) as a readable table and as JSON;
 * `bitlab plan` prints both, bitlab.plan{} returns the JSON as a Lua table. */
#ifndef BITLAB_PLAN_REPORT_H
#define BITLAB_PLAN_REPORT_H

#include <stdio.h>

#include <cjson/cJSON.h>

#include "plan/plan.h"
#include "plan/plan_host.h"

/* Every figure in bytes: {"model", "run", "cpu", "gpu", "alternatives",
 * "notes"}. NULL when out of memory. */
cJSON *bl_plan_to_json(const BlPlan *p, const BlPlanSource *src);

/* The table: categories with CPU and GPU columns, the peaks, the two
 * alternatives and the notes saying what was measured and what assumed. */
void bl_plan_print_table(FILE *f, const BlPlan *p, const BlPlanSource *src);

#endif
