#include "utf8.h"

#include <stdint.h>
#include <string.h>

size_t
utf8_seq_len(const unsigned char *s, size_t avail)
{
    /* The lead byte sets the length and the range of the second byte (RFC 3629 section
     * 4): that range is what rules out overlong forms (E0, F0), surrogates (ED) and code
     * points above U+10FFFF (F4); C0, C1 and F5..FF never lead. */
    unsigned char c = s[0], lo = 0x80, hi = 0xbf;
    size_t n;
    if (c < 0xc2 || c > 0xf4)
        return 0;
    if (c < 0xe0) {
        n = 2;
    } else if (c < 0xf0) {
        n = 3;
        lo = c == 0xe0 ? 0xa0 : lo;
        hi = c == 0xed ? 0x9f : hi;
    } else {
        n = 4;
        lo = c == 0xf0 ? 0x90 : lo;
        hi = c == 0xf4 ? 0x8f : hi;
    }
    if (avail < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

#define HIGHS 0x8080808080808080ULL

static inline bool
ascii8(const unsigned char *s)
{
    uint64_t w;
    memcpy(&w, s, sizeof w);
    return (w & HIGHS) == 0;
}

bool
utf8_valid(const void *p, size_t len)
{
    const unsigned char *s = p;
    size_t i = 0;
    while (i < len) {
        /* WebSocket text messages are mostly ASCII (JSON): pass eight such bytes per test. */
        if (len - i >= 8 && ascii8(s + i)) {
            i += 8;
            continue;
        }
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t n = utf8_seq_len(s + i, len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

/* The letter of JSON's two-character escape for c, or 0 when it has none. */
static char
short_escape(unsigned char c)
{
    switch (c) {
    case '"': return '"';
    case '\\': return '\\';
    case '\b': return 'b';
    case '\f': return 'f';
    case '\n': return 'n';
    case '\r': return 'r';
    case '\t': return 't';
    default: return 0;
    }
}

/* The JSON text for the character (or bad byte) at p, of which avail bytes may be read:
 * written into esc, or pointing into p itself. Returns how many input bytes it covers. */
static size_t
json_piece(const unsigned char *p, size_t avail, char esc[6], const char **piece,
           size_t *plen)
{
    static const char hex[] = "0123456789abcdef";
    char letter = short_escape(*p);
    size_t u;
    if (letter != 0) {
        esc[0] = '\\';
        esc[1] = letter;
        *piece = esc;
        *plen = 2;
    } else if (*p < 0x20 || *p == 0x7f) {
        esc[0] = '\\';
        esc[1] = 'u';
        esc[2] = esc[3] = '0';
        esc[4] = hex[*p >> 4];
        esc[5] = hex[*p & 15];
        *piece = esc;
        *plen = 6;
    } else if (*p < 0x80) {
        *piece = (const char *)p;
        *plen = 1;
    } else if ((u = utf8_seq_len(p, avail)) > 0) {
        *piece = (const char *)p;
        *plen = u;
        return u;
    } else {
        *piece = "\\ufffd";
        *plen = 6;
    }
    return 1;
}

size_t
utf8_json_escape(char *out, size_t cap, const void *s, size_t n, size_t *used)
{
    const unsigned char *p = s;
    size_t w = 0, r = 0;
    while (r < n) {
        char esc[6];
        const char *piece;
        size_t plen, covers = json_piece(p + r, n - r, esc, &piece, &plen);
        if (plen > cap - w)
            break;
        memcpy(out + w, piece, plen);
        w += plen;
        r += covers;
    }
    if (used != NULL)
        *used = r;
    return w;
}
