/* l_train.c - the Student and Trainer userdata: adapters, λ and activation
 * width, student greedy generation and forward, the distillation step with
 * per-step loss weights and LR, the teacher from a trace or cached,
 * checkpoints; and the evaluation helpers (perplexity, teacher–student
 * agreement, common prefix).
 *
 * A Student keeps its Model alive and a Trainer its Student (user value 1)
 * and its Trace (user value 2), so the C structs they point into never
 * dangle. */
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "data/dataset.h"
#include "dist/comm.h"
#include "dist/device_comm.h"
#include "train/checkpoint.h"
#include "eval/student_eval.h"
#include "script/internal.h"
#include "tokenizer/tokenizer.h"
#include "trace/trace.h"
#include "ops/quant.h"
#include "train/trainer.h"
#include "train/student.h"

/* The hyper-parameter guards: what a Lua option may set. Outside these the
 * option is refused by name before it reaches the trainer. */
#define BL_LR_MAX 1.0            /* AdamW moves every weight by about lr per step */
#define BL_WEIGHT_DECAY_MAX 1.0  /* p *= 1 - lr·wd must not flip the sign */
#define BL_EPS_MAX 1.0
#define BL_TAU_MIN 1e-2          /* logits / τ must not overflow */
#define BL_TAU_MAX 1e2
#define BL_LOSS_WEIGHT_MAX FLT_MAX /* finite as a float */
#define BL_CLIP_MAX FLT_MAX       /* 0 disables clipping */
#define BL_BATCH_MAX 4096
#define BL_SEQ_MAX (1 << 20)

/* trainer: the live trainer of this student (its newest), whose backend
 * holds the student's current values between steps; a binding that reads
 * the host student's tensors syncs from it first (check_student_synced). */
typedef struct {
    BlStudent s;
    int live;
    BlTrainer *trainer;
} LStudent;

/* A Trainer: the one trainer (train/trainer.h) on the run's backend, and
 * the step parameters a step uses unless its call overrides them (the
 * binding's defaults, never written into the trainer). */
typedef struct {
    BlTrainer t;
    int live;
    BlLossConfig loss;     /* the default loss mix and τ */
    BlOptConfig opt;       /* the default AdamW settings and clipping */
    int lambda_acts;       /* the default lambda_acts: 0, 1, or -1 = the student's (checkpointed) */
    BlTraceReader *reader; /* the teacher from a trace, or NULL */
    bool saved;            /* a checkpoint was written: its size breakdown is printed once */
} LTrainer;

static BlStudent *check_student(lua_State *L, int idx) {
    LStudent *u = luaL_checkudata(L, idx, BL_MT_STUDENT);
    if (!u->live) luaL_error(L, "the student was freed");
    return &u->s;
}

/* The student with its host tensors current: downloaded from its trainer's
 * backend when a step updated them there. */
static BlStudent *check_student_synced(lua_State *L, int idx) {
    LStudent *u = luaL_checkudata(L, idx, BL_MT_STUDENT);
    if (!u->live) luaL_error(L, "the student was freed");
    BlError err = {{0}};
    if (u->trainer && bl_trainer_sync_host(u->trainer, &err)) bl_lua_fail(L, &err);
    return &u->s;
}

BlStudent *bl_lua_check_student(lua_State *L, int idx) { return check_student_synced(L, idx); }

static LTrainer *check_trainer(lua_State *L, int idx) {
    LTrainer *u = luaL_checkudata(L, idx, BL_MT_TRAINER);
    if (!u->live) luaL_error(L, "the trainer was freed");
    return u;
}

static void set_num(lua_State *L, const char *k, double v) {
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

// ----------------------------------------------------------------------------
// Student

/* bitlab.student{model=, lambda=1, act_bits=8, subln=false,
 * post_attn_norm=false, dense=false} */
static int l_student(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    bl_field_udata(L, 1, "model", BL_MT_MODEL, true);
    BlModel *m = bl_lua_check_model(L, -1);
    BlStudentConfig c = {.lambda = (float)bl_opt_num(L, 1, "lambda", 1.0, 0.0, 1.0),
                         .act_bits = (int)bl_opt_int(L, 1, "act_bits", 8, 4, 16),
                         .subln = bl_opt_bool(L, 1, "subln", 0),
                         .post_attn_norm = bl_opt_bool(L, 1, "post_attn_norm", 0),
                         .dense = bl_opt_bool(L, 1, "dense", 0)};
    LStudent *u = lua_newuserdatauv(L, sizeof *u, 1);
    u->live = 0;
    u->trainer = NULL;
    luaL_setmetatable(L, BL_MT_STUDENT);
    lua_pushvalue(L, -2);
    lua_setiuservalue(L, -2, 1);
    BlError err = {{0}};
    if (bl_build_student(&u->s, m, &c, &err)) return bl_lua_fail(L, &err);
    u->live = 1;
    return 1;
}

static int s_gc(lua_State *L) {
    LStudent *u = luaL_checkudata(L, 1, BL_MT_STUDENT);
    if (u->live) bl_free_student(&u->s);
    u->live = 0;
    return 0;
}

/* The largest LoRA rank: min(in, out) of the smallest adapted matrix. */
static int max_rank(const BlStudent *s) {
    int r = INT_MAX;
    for (size_t i = 0; i < (size_t)s->model->cfg.n_layers * BL_LIN_KINDS; i++) {
        const BlLoraStack *st = &s->lin[i].lora;
        if (st->out <= 0) continue;
        if (st->out < r) r = st->out;
        if (st->in < r) r = st->in;
    }
    return r == INT_MAX ? 1 : r;
}

static int s_tostring(lua_State *L) {
    LStudent *u = luaL_checkudata(L, 1, BL_MT_STUDENT);
    if (!u->live) lua_pushliteral(L, "bitlab.Student (freed)");
    else lua_pushfstring(L, "bitlab.Student (lambda %f, %d-bit acts, %d adapters)",
                         (double)u->s.cfg.lambda, u->s.cfg.act_bits, bl_student_n_adapters(&u->s));
    return 1;
}

/* student:add_adapter{rank=16, alpha=32, seed=} / student:rotate{...} */
static int add_or_rotate(lua_State *L, int rotate) {
    BlStudent *s = check_student_synced(L, 1);
    int na = bl_student_n_adapters(s), rmax = max_rank(s);
    int opts = bl_opt_table(L, 2);
    int r = (int)bl_opt_int(L, opts, "rank", 16 < rmax ? 16 : rmax, 1, rmax);
    float alpha = (float)bl_opt_num(L, opts, "alpha", 2.0 * r, 0.0, 1e6);
    lua_Integer seed = bl_opt_integer(L, opts, "seed", 1 + 1000 * (lua_Integer)na);
    BlError err = {{0}};
    if ((rotate ? bl_student_rotate : bl_student_add_adapter)(s, r, alpha, (uint64_t)seed, &err))
        return bl_lua_fail(L, &err);
    if (rotate) {
        cJSON *f = cJSON_CreateObject();
        cJSON_AddNumberToObject(f, "adapter", na + 1);
        cJSON_AddNumberToObject(f, "rank", r);
        bl_metrics_event(bl_rt(L), "rotation", f);
    }
    lua_pushinteger(L, na + 1);
    return 1;
}

static int s_add_adapter(lua_State *L) { return add_or_rotate(L, 0); }
static int s_rotate(lua_State *L) { return add_or_rotate(L, 1); }

static int s_n_adapters(lua_State *L) {
    lua_pushinteger(L, bl_student_n_adapters(check_student(L, 1)));
    return 1;
}

/* student:set_lambda(x) / student:lambda() */
static int s_set_lambda(lua_State *L) {
    BlStudent *s = check_student(L, 1);
    lua_Number x = luaL_checknumber(L, 2);
    if (!(x >= 0.0 && x <= 1.0)) return luaL_argerror(L, 2, "lambda must be in [0, 1]");
    s->cfg.lambda = (float)x;
    return 0;
}

static int s_lambda(lua_State *L) {
    lua_pushnumber(L, check_student(L, 1)->cfg.lambda);
    return 1;
}

/* student:lambda_acts() → whether λ blends its BitLinear inputs too (what it
 * was last trained with: BlStudentConfig.lambda_acts, checkpointed) */
static int s_lambda_acts(lua_State *L) {
    lua_pushboolean(L, check_student(L, 1)->cfg.lambda_acts);
    return 1;
}

static int s_set_act_bits(lua_State *L) {
    BlStudent *s = check_student(L, 1);
    lua_Integer b = bl_check_int(L, 2, 4, 16);
    if (bl_actq_levels((int)b) < 0) return luaL_argerror(L, 2, "activation bits must be 4, 8 or 16");
    s->cfg.act_bits = (int)b;
    return 0;
}

static int s_act_bits(lua_State *L) {
    lua_pushinteger(L, check_student(L, 1)->cfg.act_bits);
    return 1;
}

/* student:generate(prompt [, {max_tokens=, chat=, system=}]) → text, ids */
static int s_generate(lua_State *L) {
    BlStudent *s = check_student_synced(L, 1);
    int opts = bl_opt_table(L, 3);
    int n, max_new = bl_lua_max_tokens(L, s->model, opts);
    int *prompt = bl_lua_prompt(L, s->model, 2, opts, &n);
    bl_lua_check_context(L, s->model, n, max_new);
    int *out = lua_newuserdatauv(L, sizeof(int) * (size_t)max_new, 0);
    int n_out = 0;
    BlError err = {{0}};
    if (bl_student_generate_greedy(bl_rt_backend(bl_rt(L)), s, bl_student_mode(s), prompt, n,
                                   max_new, BL_STUDENT_WEFF_CACHE_MAX, out, &n_out, &err))
        return bl_lua_fail(L, &err);
    char *text = NULL;
    if (bl_tokenizer_decode(s->model->tokenizer, out, n_out, true, &text, &err))
        return bl_lua_fail(L, &err);
    lua_pushstring(L, text);
    free(text);
    bl_lua_push_ids(L, out, n_out);
    return 2;
}

/* student:forward(ids) → argmax per position, mean next-token NLL */
static int s_forward(lua_State *L) {
    BlStudent *s = check_student_synced(L, 1);
    int n;
    int *ids = bl_lua_check_ids(L, 2, s->model, &n);
    int *am = lua_newuserdatauv(L, sizeof(int) * (size_t)n, 0);
    double nll = 0.0;
    long cnt = 0;
    BlError err = {{0}};
    if (bl_eval_sequence(bl_rt_backend(bl_rt(L)), s->model, s, bl_student_mode(s), ids, n, NULL,
                         am, &nll, &cnt, &err))
        return bl_lua_fail(L, &err);
    bl_lua_push_ids(L, am, n);
    lua_pushnumber(L, cnt ? nll / cnt : 0.0);
    return 2;
}

static int s_memory(lua_State *L) {
    BlStudentMemory mem;
    bl_student_memory(check_student(L, 1), &mem);
    lua_newtable(L);
    set_num(L, "frozen_weights", (double)mem.frozen_weights);
    set_num(L, "adapters_frozen", (double)mem.adapters_frozen);
    set_num(L, "adapters_trainable", (double)mem.adapters_trainable);
    set_num(L, "dense", (double)mem.dense);
    set_num(L, "grads", (double)mem.grads);
    set_num(L, "optimizer", (double)mem.optimizer);
    return 1;
}

// ----------------------------------------------------------------------------
// evaluation

/* bitlab.perplexity(model_or_student, ds [, max_examples]) → ppl, rows
 * (eval/student_eval.h, on the run's backend; a student at its own λ and
 * activation width) */
static int l_perplexity(lua_State *L) {
    BlStudent *s = luaL_testudata(L, 1, BL_MT_STUDENT) ? check_student_synced(L, 1) : NULL;
    const BlModel *m = s ? s->model : bl_lua_check_model(L, 1);
    BlDataset *d = bl_lua_check_dataset(L, 2);
    int lim = (int)bl_optarg_int(L, 3, d->n, 0, INT_MAX);
    double ppl = NAN;
    long long rows = 0;
    BlStudentMode mode = s ? bl_student_mode(s) : (BlStudentMode){0};
    BlError err = {{0}};
    if (bl_eval_perplexity(bl_rt_backend(bl_rt(L)), m, s, mode, d, lim, &ppl, &rows, &err))
        return bl_lua_fail(L, &err);
    lua_pushnumber(L, ppl);
    lua_pushinteger(L, (lua_Integer)rows);
    return 2;
}

/* bitlab.agreement(student, ds [, max_examples]) → fraction of target rows
 * where teacher and student agree on the top-1 next token, rows */
static int l_agreement(lua_State *L) {
    BlStudent *s = check_student_synced(L, 1);
    BlDataset *d = bl_lua_check_dataset(L, 2);
    int lim = (int)bl_optarg_int(L, 3, d->n, 0, INT_MAX);
    double agree = NAN;
    long long rows = 0;
    BlError err = {{0}};
    if (bl_eval_agreement(bl_rt_backend(bl_rt(L)), s, bl_student_mode(s), d, lim, &agree, &rows,
                          &err))
        return bl_lua_fail(L, &err);
    lua_pushnumber(L, agree);
    lua_pushinteger(L, (lua_Integer)rows);
    return 2;
}

/* bitlab.common_prefix(a, b) → length of the common prefix of two lists */
static int l_common_prefix(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_Integer na = luaL_len(L, 1), nb = luaL_len(L, 2), i = 0;
    for (; i < na && i < nb; i++) {
        lua_rawgeti(L, 1, i + 1);
        lua_rawgeti(L, 2, i + 1);
        int eq = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
        if (!eq) break;
    }
    lua_pushinteger(L, i);
    return 1;
}

// ----------------------------------------------------------------------------
// Trainer

/* The loss weights (finite, >= 0) and τ of the options table at idx. */
static void read_loss_weights(lua_State *L, int idx, BlLossConfig *lc) {
    lc->w_ce = (float)bl_opt_num(L, idx, "ce", lc->w_ce, 0.0, BL_LOSS_WEIGHT_MAX);
    lc->w_kl = (float)bl_opt_num(L, idx, "kl", lc->w_kl, 0.0, BL_LOSS_WEIGHT_MAX);
    lc->w_topk = (float)bl_opt_num(L, idx, "topk", lc->w_topk, 0.0, BL_LOSS_WEIGHT_MAX);
    lc->w_cos = (float)bl_opt_num(L, idx, "cos", lc->w_cos, 0.0, BL_LOSS_WEIGHT_MAX);
    lc->w_mag = (float)bl_opt_num(L, idx, "mag", lc->w_mag, 0.0, BL_LOSS_WEIGHT_MAX);
    lc->w_rel = (float)bl_opt_num(L, idx, "rel", lc->w_rel, 0.0, BL_LOSS_WEIGHT_MAX);
    lc->tau = (float)bl_opt_num(L, idx, "tau", lc->tau, BL_TAU_MIN, BL_TAU_MAX);
}

/* lambda_acts of the options table at idx: 1 or 0 for true or false, dflt
 * when absent; anything but a boolean is an error (a number might be meant
 * as a separate λ, which this is not). */
static int read_lambda_acts(lua_State *L, int idx, int dflt) {
    if (!idx) return dflt;
    int t = lua_getfield(L, idx, "lambda_acts");
    int v = t == LUA_TNIL ? dflt : lua_toboolean(L, -1);
    if (t != LUA_TNIL && t != LUA_TBOOLEAN)
        luaL_error(L, "option 'lambda_acts' must be a boolean (λ blends the activations too), "
                      "got a %s", lua_typename(L, t));
    lua_pop(L, 1);
    return v;
}

/* A β of the options table at idx: in [0, 1) as the float AdamW uses. */
static float read_beta(lua_State *L, int idx, const char *name, double dflt) {
    double b = bl_opt_num(L, idx, name, dflt, 0.0, 1.0);
    if (!((float)b < 1.0f)) {
        char got[BL_NUM_BUF];
        luaL_error(L, "option '%s' must be in [0, 1), got %s", name, bl_fmt_num(got, b));
    }
    return (float)b;
}

static float read_lr(lua_State *L, int idx, double dflt) {
    return (float)bl_opt_num(L, idx, "lr", dflt, 0.0, BL_LR_MAX);
}

/* The trace= option (a path or a Trace) checked against the trainer's model
 * and, with data=, its dataset; pushes the Trace userdata (or nil). */
static BlTrace *opt_trace(lua_State *L, const BlModel *m) {
    int tt = lua_getfield(L, 1, "trace");
    if (tt == LUA_TNIL) return NULL;
    if (tt != LUA_TSTRING && !luaL_testudata(L, -1, BL_MT_TRACE))
        luaL_error(L, "trainer: option 'trace' must be a path or a bitlab.Trace, got %s", lua_typename(L, tt));
    BlTrace *t = bl_lua_push_trace(L, lua_gettop(L));
    lua_remove(L, -2);
    BlError err = {{0}};
    if (bl_trace_check_model(t, m, &err)) bl_lua_fail(L, &err);
    bl_field_udata(L, 1, "data", BL_MT_DATASET, false);
    if (!lua_isnil(L, -1) && bl_trace_check_data(t, bl_lua_check_dataset(L, -1), &err))
        bl_lua_fail(L, &err);
    lua_pop(L, 1);
    return t;
}

/* The trainer's teacher becomes the trace (refused when it cannot serve the
 * starting loss mix). */
static void use_trace(lua_State *L, LTrainer *u, BlTrace *t) {
    BlError err = {{0}};
    if (bl_trace_reader_new(&u->reader, t, &err)) bl_lua_fail(L, &err);
    BlTeacherProvider p;
    bl_trace_provider(u->reader, &p);
    BlStepParams sp = bl_step_params(u->t.student, &u->loss, &u->opt);
    if (bl_trainer_set_teacher(&u->t, &p, &err) || bl_trainer_check_params(&u->t, &sp, &err))
        bl_lua_fail(L, &err);
}

/* bitlab.trainer{student=, batch=1, seq=, ce=1, kl=0, topk=0, k=0, cos=0,
 * mag=0, rel=0, tau=1, clip=1, lr=1e-4, beta1=0.9, beta2=0.95, eps=1e-8,
 * weight_decay=0, trace=nil, data=nil, teacher_cache=true,
 * hidden_states=true, integer_forward=false, lambda_acts=nil,
 * relation_layer=nil}; batch and seq are the
 * micro-batch capacity, k the
 * top-K capacity (0: no top-K loss), hidden_states whether the teacher's
 * block outputs are kept (the cos / mag losses need them), relation_layer
 * the layer (1-based, as block_grad_norm counts them: 1..n_layers) of the
 * attention-relation loss rel (nil: none, and rel must stay 0); the loss weights,
 * τ and the AdamW settings are the defaults of every step. trace = a path or
 * a Trace: the teacher's outputs come from it (k defaults to its K; data,
 * when given, must be the dataset it was made from). integer_forward: at
 * λ = 1 with 8- or 4-bit activations the student forward's block linears run
 * as exact int8 × ternary products (be->ternary_matmul: VNNI on the CPU,
 * cuBLASLt on CUDA) instead of fp32 GEMMs of the dequantised values; the
 * backward is the same either way. lambda_acts: λ blends the BitLinear
 * inputs too, x + λ·(actq(x) − x) (BlStepParams.lambda_acts); nil: what
 * the student was last trained with (false for a new one, the checkpoint's
 * after trainer:load). The trainer runs on the run's device (--device). */
static int l_trainer(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    bl_field_udata(L, 1, "student", BL_MT_STUDENT, true);
    BlStudent *s = check_student_synced(L, -1);
    LStudent *owner = lua_touserdata(L, -1);
    int B = (int)bl_opt_int(L, 1, "batch", 1, 1, BL_BATCH_MAX);
    lua_getfield(L, 1, "seq");
    if (lua_isnil(L, -1)) return luaL_error(L, "trainer: option 'seq' (>= 2) is required");
    lua_pop(L, 1);
    int T = (int)bl_opt_int(L, 1, "seq", 0, 2, BL_SEQ_MAX);
    BlLossConfig lc = {.w_ce = 1.0f, .tau = 1.0f};
    read_loss_weights(L, 1, &lc);
    BlTrace *trace = opt_trace(L, s->model); /* pushes the Trace or nil */
    int trace_idx = lua_gettop(L);
    int K = (int)bl_opt_int(L, 1, "k", trace ? trace->K : 0, 0, BL_TOPK_MAX);
    BlOptConfig oc = {
        .adamw = {.lr = read_lr(L, 1, 1e-4),
                  .beta1 = read_beta(L, 1, "beta1", 0.9),
                  .beta2 = read_beta(L, 1, "beta2", 0.95),
                  .eps = (float)bl_opt_num(L, 1, "eps", 1e-8, FLT_MIN, BL_EPS_MAX),
                  .weight_decay = (float)bl_opt_num(L, 1, "weight_decay", 0.0, 0.0, BL_WEIGHT_DECAY_MAX)},
        .max_grad_norm = (float)bl_opt_num(L, 1, "clip", 1.0, 0.0, BL_CLIP_MAX)};
    if (lc.w_topk != 0.0f && K <= 0) return luaL_error(L, "trainer: the top-K loss needs k=");
    BlTrainerShape sh = {.batch = B, .seq = T, .topk = K,
                         .hidden = bl_opt_bool(L, 1, "hidden_states", 1),
                         .teacher_cache = bl_opt_bool(L, 1, "teacher_cache", 1),
                         .ternary_fast_path = bl_opt_bool(L, 1, "integer_forward", 0)};
    if (!sh.hidden && (lc.w_cos != 0.0f || lc.w_mag != 0.0f))
        return luaL_error(L, "trainer: cos / mag losses need hidden_states = true");
    int rl = (int)bl_opt_int(L, 1, "relation_layer", 0, 1, s->model->cfg.n_layers);
    sh.relation = rl > 0;
    sh.relation_layer = rl - 1;
    if (!sh.relation && lc.w_rel != 0.0f)
        return luaL_error(L, "trainer: the relation loss (rel) needs option 'relation_layer' "
                             "(1..%d)", s->model->cfg.n_layers);
    int lambda_acts = read_lambda_acts(L, 1, -1);
    LTrainer *u = lua_newuserdatauv(L, sizeof *u, 2);
    u->live = 0;
    u->reader = NULL;
    u->saved = false;
    u->loss = lc;
    u->opt = oc;
    u->lambda_acts = lambda_acts;
    luaL_setmetatable(L, BL_MT_TRAINER);
    lua_getfield(L, 1, "student");
    lua_setiuservalue(L, -2, 1);
    lua_pushvalue(L, trace_idx);
    lua_setiuservalue(L, -2, 2);
    BlError err = {{0}};
    if (bl_build_trainer(&u->t, bl_rt_backend(bl_rt(L)), s, &sh, &err)) return bl_lua_fail(L, &err);
    u->live = 1;
    owner->trainer = &u->t; /* the newest trainer holds the student's current values */
    if (trace) use_trace(L, u, trace);
    return 1;
}

static int t_gc(lua_State *L) {
    LTrainer *u = luaL_checkudata(L, 1, BL_MT_TRAINER);
    lua_getiuservalue(L, 1, 1);
    LStudent *owner = luaL_testudata(L, -1, BL_MT_STUDENT);
    if (u->live) {
        /* the student keeps what was trained after its trainer is gone */
        BlError err = {{0}};
        if (owner && owner->live && bl_trainer_sync_host(&u->t, &err))
            fprintf(stderr, "bitlab: the trained student could not be copied back: %s\n", err.msg);
        bl_free_trainer(&u->t);
    }
    if (owner && owner->trainer == &u->t) owner->trainer = NULL;
    bl_trace_reader_free(u->reader);
    u->reader = NULL;
    u->live = 0;
    return 0;
}

static int t_tostring(lua_State *L) {
    LTrainer *u = luaL_checkudata(L, 1, BL_MT_TRAINER);
    if (!u->live) lua_pushliteral(L, "bitlab.Trainer (freed)");
    else lua_pushfstring(L, "bitlab.Trainer %d x %d on %s, %d steps", u->t.B, u->t.T, u->t.be->name,
                         (int)u->t.steps);
    return 1;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void push_result(lua_State *L, const BlTrainer *tr, const BlStepResult *r) {
    lua_createtable(L, 0, 16);
    set_num(L, "ce", r->ce);
    set_num(L, "kl", r->kl);
    set_num(L, "topk", r->topk);
    set_num(L, "cos", r->cos);
    set_num(L, "mag", r->mag);
    set_num(L, "rel", r->rel);
    set_num(L, "total", r->total);
    set_num(L, "grad_norm", r->grad_norm);
    int nl = tr->m->cfg.n_layers;
    lua_createtable(L, nl, 0);
    for (int l = 0; l < nl; l++) {
        lua_pushnumber(L, r->block_grad_norm ? r->block_grad_norm[l] : 0.0);
        lua_rawseti(L, -2, l + 1);
    }
    lua_setfield(L, -2, "block_grad_norm");
    lua_createtable(L, 0, BL_GRAD_KINDS);
    for (int k = 0; k < BL_GRAD_KINDS; k++) {
        if (r->kind_grad_norm[k] == 0.0) continue; /* kinds this arch lacks */
        lua_pushnumber(L, r->kind_grad_norm[k]);
        lua_setfield(L, -2, k == BL_GRAD_KIND_NORM ? "norm" : bl_linear_kind_name(k));
    }
    lua_setfield(L, -2, "kind_grad_norm");
    lua_pushboolean(L, r->skipped);
    lua_setfield(L, -2, "skipped");
    lua_pushinteger(L, tr->skipped);
    lua_setfield(L, -2, "skipped_total");
    lua_pushstring(L, bl_teacher_source_name(r->teacher));
    lua_setfield(L, -2, "teacher");
}

/* A shared step's reduction over the processes (dist/comm.h): fixed order,
 * the same bits on every rank. */
static int comm_reduce(void *ctx, float *g, size_t n, double *s, int ns, BlError *err) {
    (void)ctx;
    return bl_comm_sum_floats(g, n, err) || bl_comm_sum_doubles(s, (size_t)ns, err) ? -1 : 0;
}

/* NCCL between the ranks' GPUs (the CUDA module's entries, backend.h) */
static const BlDeviceCollective nccl = {
    .name = "NCCL",
    .unique_id = bl_backend_cuda_nccl_unique_id,
    .init = bl_backend_cuda_nccl_init,
    .sum = bl_backend_cuda_nccl_sum,
    .free = bl_backend_cuda_nccl_free,
};

/* On CUDA the arena is summed on the devices (dist/device_comm.h), joined
 * at the first shared step; the losses still go through comm_reduce. */
static int device_sum(void *ctx, float *g, size_t n, BlError *err) {
    (void)ctx;
    return bl_device_comm_init(&nccl, err) || bl_device_comm_sum(g, n, err) ? -1 : 0;
}

/* trainer:step(batch [, {lr=, ce=, kl=, topk=, cos=, mag=, rel=, tau=, lambda_acts=}]) → result
 *
 * Under mpirun (bitlab.world_size() N > 1) every rank passes the same global
 * batch of B sequences and trains its slice, rows [rank·B/N, (rank+1)·B/N),
 * in micro-batches of the trainer's batch, each weighted by its share of
 * the global batch's loss rows; the gradients and losses are
 * summed over the ranks in rank order (bl_trainer_step_reduce), so every
 * rank takes the same update and returns the same result. It equals one
 * process's step on the whole batch bit for bit when each rank's slice is
 * one micro-batch (B = N · the trainer's batch), up to rounding otherwise.
 * B must be a multiple of N · the trainer's batch. On CUDA the gradients
 * are summed between the GPUs by NCCL (on the device, its own stream), whose
 * sum is not in rank order: there the step equals one process's only up to
 * rounding. */
static int t_step(lua_State *L) {
    LTrainer *u = check_trainer(L, 1);
    BlTrainer *tr = &u->t;
    const BlLuaBatch *batch = bl_lua_check_batch(L, 2);
    int B = batch->B, T = batch->T, *tokens = batch->tokens, *lens = batch->lens;
    uint8_t *mask = batch->mask;
    if (T > tr->T) return luaL_error(L, "batch length %d exceeds the trainer's seq %d", T, tr->T);
    if (B % tr->B) return luaL_error(L, "batch of %d is not a multiple of the trainer's %d", B, tr->B);
    int world = bl_comm_size(), rank = bl_comm_rank();
    if (world > 1 && B % (world * tr->B))
        return luaL_error(L, "batch of %d sequences does not split over %d processes in micro-batches "
                          "of the trainer's %d: make batch a multiple of %d", B, world, tr->B, world * tr->B);
    int opts = bl_opt_table(L, 3);
    /* this call's parameters: the trainer's defaults, the call's overrides,
     * the student's λ and activation width as they are now */
    BlStepParams p = bl_step_params(tr->student, &u->loss, &u->opt);
    read_loss_weights(L, opts, &p.loss);
    p.opt.adamw.lr = read_lr(L, opts, u->opt.adamw.lr);
    p.lambda_acts = read_lambda_acts(L, opts, u->lambda_acts < 0 ? p.lambda_acts : u->lambda_acts);
    BlStepResult r;
    BlError err = {{0}};
    /* a rotation or a new adapter changed the host student: the backend's copy follows */
    if (!bl_device_student_current(&tr->ds) && bl_trainer_upload(tr, &err)) return bl_lua_fail(L, &err);
    if (bl_trainer_check_params(tr, &p, &err)) return bl_lua_fail(L, &err);
    double t0 = now_s();
    /* this rank's slice of the global batch (all of it in one process) */
    int Bl = B / world;
    size_t r0 = (size_t)rank * Bl;
    BlMicroBatch mb = {.tokens = tokens + r0 * T, .lens = lens + r0, .mask = mask ? mask + r0 * T : NULL,
                       .doc_start = batch->doc_start ? batch->doc_start + r0 * T : NULL,
                       .B = tr->B, .T = T};
    BlMicroBatch global = {.tokens = tokens, .lens = lens, .mask = mask, .doc_start = batch->doc_start,
                           .B = B, .T = T};
    BlStepReduce red = {.reduce = comm_reduce, .rows_total = bl_micro_batch_rows(&global),
                        .sum_device = strcmp(tr->be->name, "cuda") == 0 ? device_sum : NULL};
    if (bl_trainer_step_reduce(tr, &mb, Bl / tr->B, world > 1 ? &red : NULL, &p, &r, &err))
        return bl_lua_fail(L, &err);
    double dt = now_s() - t0;
    long ntok = 0;
    for (int b = 0; b < B; b++) ntok += lens[b];
    if (r.skipped) {
        cJSON *f = cJSON_CreateObject();
        cJSON_AddNumberToObject(f, "step", (double)tr->steps); /* the trainer's, poll or not */
        cJSON_AddNumberToObject(f, "skipped_total", (double)tr->skipped);
        bl_metrics_event(bl_rt(L), "nonfinite_skip", f);
    }
    push_result(L, tr, &r);
    set_num(L, "seconds", dt);
    set_num(L, "tokens", (double)ntok);
    set_num(L, "tokens_per_s", dt > 0 ? ntok / dt : 0.0);
    return 1;
}

static const char *dtype_name(BlCkptDtype dtype) { return dtype == BL_CKPT_BF16 ? "bf16" : "fp32"; }

/* trainer:save's options table at arg: {frozen_adapters = "fp32" | "bf16"}. */
static BlCheckpointOptions save_options(lua_State *L, int arg) {
    BlCheckpointOptions o = {.frozen_adapters = BL_CKPT_F32};
    int t = bl_opt_table(L, arg);
    if (!t || lua_getfield(L, t, "frozen_adapters") == LUA_TNIL) return o;
    /* strictly a string: 16 must not pass as "16" */
    const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    if (v && strcmp(v, "bf16") == 0) o.frozen_adapters = BL_CKPT_BF16;
    else if (!v || strcmp(v, "fp32") != 0)
        luaL_argerror(L, arg, lua_pushfstring(L, "frozen_adapters must be \"fp32\" or \"bf16\", got %s%s%s",
                                              v ? "\"" : "a ", v ? v : luaL_typename(L, -1), v ? "\"" : ""));
    lua_pop(L, 1);
    return o;
}

/* trainer:save(path [, state [, {frozen_adapters = "fp32" | "bf16"}]]):
 * state is any JSON-able table, stored with the knob values and the
 * bitlab.random state; bf16 frozen adapters make the file smaller but a
 * resume from it not bit for bit (checkpoint.h). Under mpirun only rank 0
 * writes (every rank holds the same student); the others return at once,
 * after the same argument checks. */
static int t_save(lua_State *L) {
    LTrainer *u = check_trainer(L, 1);
    const char *path = luaL_checkstring(L, 2);
    BlCheckpointOptions copt = save_options(L, 4);
    BlRuntime *rt = bl_rt(L);
    BlError err = {{0}};
    cJSON *o = cJSON_CreateObject(), *user = NULL;
    if (!lua_isnoneornil(L, 3) && !(user = bl_lua_to_json(L, 3, true, &err))) {
        cJSON_Delete(o);
        return luaL_argerror(L, 3, err.msg);
    }
    if (user) cJSON_AddItemToObject(o, "user", user);
    if (bl_comm_rank() > 0) {
        cJSON_Delete(o);
        return 0;
    }
    cJSON_AddItemToObject(o, "knobs", bl_knobs_json(rt));
    char rng[24];
    snprintf(rng, sizeof rng, "%016" PRIx64, rt->rng);
    cJSON_AddStringToObject(o, "rng", rng);
    char *json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    int rc = json ? bl_checkpoint_save_opts(path, u->t.student, &u->t, json, &copt, &err)
                  : bl_fail(&err, "out of memory");
    BlCheckpointSizes sz;
    struct stat fst;
    if (rc == 0 && stat(path, &fst) != 0)
        rc = bl_fail(&err, "%s: written but cannot be read back: %s", path, strerror(errno));
    if (rc == 0) bl_checkpoint_sizes(u->t.student, json, &copt, (size_t)fst.st_size, &sz);
    cJSON_free(json);
    if (rc) return bl_lua_fail(L, &err);
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "path", path);
    cJSON_AddStringToObject(f, "frozen_adapters", dtype_name(copt.frozen_adapters));
    cJSON *by = cJSON_AddObjectToObject(f, "bytes");
    cJSON_AddNumberToObject(by, "total", (double)sz.total);
    cJSON_AddNumberToObject(by, "adapters_frozen", (double)sz.adapters_frozen);
    cJSON_AddNumberToObject(by, "adapters_trainable", (double)sz.adapters_trainable);
    cJSON_AddNumberToObject(by, "dense", (double)sz.dense);
    cJSON_AddNumberToObject(by, "norms", (double)sz.norms);
    cJSON_AddNumberToObject(by, "optimizer", (double)sz.optimizer);
    cJSON_AddNumberToObject(by, "state", (double)sz.state);
    cJSON_AddNumberToObject(by, "other", (double)sz.other);
    bl_metrics_event(rt, "checkpoint", f);
    /* once per trainer: where a checkpoint's size goes (all fp32 but, when
     * asked for, the frozen adapters: a resume is bit for bit only then) */
    if (!u->saved && !rt->cfg.dash) {
        double MB = 1e6;
        fprintf(stderr,
                "bitlab: checkpoint %s: %.1f MB = adapters %.1f (frozen %.1f %s, trainable %.1f), "
                "dense %.1f, norms %.2f, AdamW moments %.1f, script state %.3f, other %.3f\n",
                path, sz.total / MB, (sz.adapters_frozen + sz.adapters_trainable) / MB,
                sz.adapters_frozen / MB, dtype_name(copt.frozen_adapters),
                sz.adapters_trainable / MB, sz.dense / MB, sz.norms / MB, sz.optimizer / MB,
                sz.state / MB, sz.other / MB);
    }
    u->saved = true;
    return 0;
}

/* The resume event records the BLAS that wrote the checkpoint and the one
 * running now, and the frozen adapters' dtype; a one-line notice when the
 * BLAS differ (steps then differ in the last bits from an uninterrupted run:
 * deterministic per setting) or the frozen adapters were stored in bf16
 * (rounded: the resumed run is not the uninterrupted one). */
static void resume_notices(BlRuntime *rt, const char *path, cJSON *f) {
    BlCheckpointInfo ci;
    BlError err = {{0}};
    if (bl_checkpoint_info(path, &ci, &err) != 0) return;
    cJSON_AddStringToObject(f, "frozen_adapters", dtype_name(ci.frozen_adapters));
    if (ci.frozen_adapters == BL_CKPT_BF16 && !rt->cfg.dash)
        fprintf(stderr, "bitlab: note: %s stores its frozen adapters in bf16: the resumed run is "
                "close to, not bit for bit, the uninterrupted one\n", path);
    char core[BL_CKPT_CORE_LEN];
    int threads;
    bl_blas_info(core, &threads);
    cJSON_AddStringToObject(f, "blas_core", core);
    cJSON_AddNumberToObject(f, "blas_threads", threads);
    cJSON_AddStringToObject(f, "checkpoint_blas_core", ci.blas_core);
    cJSON_AddNumberToObject(f, "checkpoint_blas_threads", (double)ci.blas_threads);
    /* the thread count changes nothing (ops/parallel.h); the kernel family does */
    if (ci.blas_threads > 0 && strcmp(ci.blas_core, core) != 0 && !rt->cfg.dash)
        fprintf(stderr, "bitlab: note: %s was written with BLAS core %s, this run uses %s: steps are "
                "deterministic per core but will differ slightly from an uninterrupted run (set "
                "OPENBLAS_CORETYPE to match)\n", path, ci.blas_core, core);
}

/* trainer:load(path) → state (restores adapters, optimizer, counters, knobs,
 * bitlab.random) */
static int t_load(lua_State *L) {
    LTrainer *u = check_trainer(L, 1);
    const char *path = luaL_checkstring(L, 2);
    BlRuntime *rt = bl_rt(L);
    BlError err = {{0}};
    char *json = NULL;
    if (bl_checkpoint_load(path, u->t.student, &u->t, &json, &err)) return bl_lua_fail(L, &err);
    cJSON *o = cJSON_Parse(json);
    free(json);
    if (!o) return luaL_error(L, "%s: the checkpoint's script state is not JSON", path);
    const cJSON *rng = cJSON_GetObjectItemCaseSensitive(o, "rng");
    if (cJSON_IsString(rng)) rt->rng = strtoull(rng->valuestring, NULL, 16);
    bl_knobs_restore(rt, cJSON_GetObjectItemCaseSensitive(o, "knobs"));
    const cJSON *user = cJSON_GetObjectItemCaseSensitive(o, "user");
    if (user) bl_json_push(L, user);
    else lua_pushnil(L);
    cJSON_Delete(o);
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "path", path);
    resume_notices(rt, path, f);
    bl_metrics_event(rt, "resume", f);
    return 1;
}

static int t_steps(lua_State *L) {
    LTrainer *u = check_trainer(L, 1);
    lua_pushinteger(L, u->t.steps);
    lua_pushinteger(L, u->t.skipped);
    return 2;
}

/* trainer:trace() → the Trace its teacher reads, or nil */
static int t_trace(lua_State *L) {
    check_trainer(L, 1);
    lua_getiuservalue(L, 1, 2);
    return 1;
}

static int t_memory(lua_State *L) {
    BlTrainerMemory mem;
    bl_trainer_memory(&check_trainer(L, 1)->t, &mem);
    lua_newtable(L);
    set_num(L, "activations", (double)mem.activations);
    set_num(L, "scratch", (double)mem.scratch);
    set_num(L, "device_student", (double)mem.device_student);
    set_num(L, "grad_accum", (double)mem.grad_accum);
    set_num(L, "student", (double)(mem.student.adapters_frozen + mem.student.adapters_trainable +
                                   mem.student.grads + mem.student.optimizer));
    set_num(L, "frozen_weights", (double)mem.student.frozen_weights);
    return 1;
}

static void new_class(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *methods) {
    luaL_newmetatable(L, name);
    luaL_setfuncs(L, meta, 0);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    bl_protect_metatable(L);
    lua_pop(L, 1);
}

void bl_open_train(lua_State *L) {
    static const luaL_Reg smeta[] = {{"__gc", s_gc}, {"__tostring", s_tostring}, {NULL, NULL}};
    static const luaL_Reg smethods[] = {
        {"add_adapter", s_add_adapter}, {"rotate", s_rotate},     {"n_adapters", s_n_adapters},
        {"set_lambda", s_set_lambda},   {"lambda", s_lambda},     {"set_act_bits", s_set_act_bits},
        {"act_bits", s_act_bits},       {"generate", s_generate}, {"forward", s_forward},
        {"memory", s_memory},           {"lambda_acts", s_lambda_acts}, {NULL, NULL}};
    new_class(L, BL_MT_STUDENT, smeta, smethods);
    static const luaL_Reg tmeta[] = {{"__gc", t_gc}, {"__tostring", t_tostring}, {NULL, NULL}};
    static const luaL_Reg tmethods[] = {{"step", t_step},     {"save", t_save},   {"load", t_load},
                                        {"steps", t_steps},   {"memory", t_memory},
                                        {"trace", t_trace},   {NULL, NULL}};
    new_class(L, BL_MT_TRAINER, tmeta, tmethods);
    static const luaL_Reg fns[] = {{"student", l_student},       {"trainer", l_trainer},
                                   {"perplexity", l_perplexity}, {"agreement", l_agreement},
                                   {"common_prefix", l_common_prefix}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
