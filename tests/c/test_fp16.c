/* test_fp16.c - bitlab's fp16 <-> fp32 conversions against the compiler's _Float16.
 *
 * fp16 -> fp32 is checked on all 65536 halves, fp32 -> fp16 on random floats
 * spread over every exponent (so subnormal, overflow and tie cases all occur)
 * plus the exact halfway points between neighbouring halves. NaNs only need to
 * stay NaN with the same sign, since payload handling differs between
 * implementations. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "io/quants.h"

static uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint16_t h2u(_Float16 h) { uint16_t u; memcpy(&u, &h, 2); return u; }
static _Float16 u2h(uint16_t u) { _Float16 h; memcpy(&h, &u, 2); return h; }

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t next_u32(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (uint32_t)(z ^ (z >> 31));
}

static int bad = 0;

static void check_to_half(float f) {
    uint16_t got = bl_fp32_to_fp16(f), want = h2u((_Float16)f);
    int same = isnan(f) ? ((got & 0x7c00) == 0x7c00 && (got & 0x3ff) && (got >> 15) == (want >> 15)) : got == want;
    if (!same && bad++ < 10) printf("fp32 %08x (%g): bitlab fp16 %04x, compiler %04x\n", f2u(f), f, got, want);
}

int main(void) {
    for (uint32_t h = 0; h < 65536; h++) {
        float got = bl_fp16_to_fp32((uint16_t)h), want = (float)u2h((uint16_t)h);
        int same = isnan(want) ? isnan(got) && signbit(got) == signbit(want) : f2u(got) == f2u(want);
        if (!same && bad++ < 10) printf("fp16 %04x: bitlab %08x, compiler %08x\n", h, f2u(got), f2u(want));
        if (!isnan(want)) check_to_half(want);
        /* halfway to the next half up (in magnitude): exercises round-to-even */
        if ((h & 0x7c00) != 0x7c00) check_to_half(u2f(f2u(want) + (1u << 12)));
    }
    /* random floats near the half range (exponents 127-30 .. 127+20) and anywhere */
    for (int i = 0; i < 4000000; i++) {
        uint32_t u = next_u32();
        if (i & 1) u = (u & 0x807fffffu) | ((97u + next_u32() % 50) << 23);
        check_to_half(u2f(u));
    }
    printf("fp16 conversions: %d mismatches\n", bad);
    return bad != 0;
}
