/*
 * z85.h: Z85 text encoding (ZeroMQ RFC 32), the 40-character form in which CurveZMQ keys appear
 * in configuration files and on the command line.
 *
 * libzmq has zmq_z85_encode/decode, but crypto/ must not depend on libzmq (it is used by the
 * offline tools and the edge runtime side as well), and Z85 is twenty lines of arithmetic with a
 * fixed test vector, so it is implemented here. tests/crypto/test_identity.c checks it against RFC
 * 32's vector and against libzmq's own encoder.
 */
#ifndef CND_Z85_H
#define CND_Z85_H

#include "error.h"

#include <stddef.h>
#include <stdint.h>

#define CND_Z85_KEY_CHARS 40 /* a 32-byte key as Z85, without the NUL */

/* Encodes len bytes (len a multiple of 4) as 5*len/4 characters plus a NUL into out.
 * Returns 0 or CND_EINVAL (len not a multiple of 4). */
CND_MUST_USE int cnd_z85_encode(char *out, const uint8_t *data, size_t len);

/* Decodes a Z85 string whose length is a multiple of 5 into out (4/5 of its length). Returns 0,
 * or CND_EINVAL for a bad length, a character outside the alphabet, or a group that overflows
 * 32 bits. */
CND_MUST_USE int cnd_z85_decode(uint8_t *out, size_t out_len, const char *text);

#endif
