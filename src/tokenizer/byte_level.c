/* byte_level.c - GPT-2's reversible map between bytes and printable code
 * points: printable Latin-1 bytes stand for themselves, the other 68 bytes
 * map to U+0100 upwards in byte order, so every byte string becomes a
 * visible Unicode string that BPE vocabularies can spell. */
#include "tokenizer/tok_internal.h"

static bool printable(unsigned b)
{
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

static uint32_t byte_to_cp(unsigned char b)
{
    if (printable(b))
        return b;
    /* non-printable runs: 0x00-0x20 (33), 0x7F-0xA0 (34), 0xAD */
    if (b <= 0x20)
        return 256 + b;
    if (b <= 0xA0)
        return 256 + 33 + (b - 0x7F);
    return 256 + 67;
}

int byte_level_encode_byte(unsigned char b, char out[2])
{
    uint32_t cp = byte_to_cp(b);
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

int byte_level_decode_cp(uint32_t cp)
{
    if (cp < 256)
        return printable(cp) ? (int)cp : -1;
    if (cp >= 256 + 68)
        return -1;
    unsigned k = cp - 256;
    if (k < 33)
        return (int)k;
    if (k < 67)
        return (int)(0x7F + (k - 33));
    return 0xAD;
}
