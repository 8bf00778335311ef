/* test_sha256.c - SHA-256 against the FIPS 180-4 / NIST example digests, fed
 * whole and in ragged chunks (block-boundary handling). */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/sha256.h"

static void digest_of(const char *msg, size_t n, size_t chunk, char hex[65]) {
    BlSha256 s;
    bl_sha256_init(&s);
    for (size_t at = 0; at < n; at += chunk) bl_sha256_update(&s, msg + at, n - at < chunk ? n - at : chunk);
    unsigned char d[32];
    bl_sha256_final(&s, d, hex);
}

int main(void) {
    static const struct { const char *msg, *hex; } V[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
    };
    char hex[65];
    for (size_t i = 0; i < sizeof V / sizeof V[0]; i++)
        for (size_t chunk = 1; chunk <= 130; chunk += 43) {
            digest_of(V[i].msg, strlen(V[i].msg), chunk, hex);
            CHECK(strcmp(hex, V[i].hex) == 0, "vector %zu chunk %zu: %s", i, chunk, hex);
        }
    size_t n = 1000000;
    char *a = malloc(n);
    memset(a, 'a', n);
    digest_of(a, n, 4099, hex);
    CHECK(strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0,
          "million a: %s", hex);
    free(a);
    return failures ? 1 : 0;
}
