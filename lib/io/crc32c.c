#include "io/crc32c.h"

#define CRC32C_POLY 0x82F63B78u /* Castagnoli's polynomial, bit-reversed */

void repq_crc32c_init(repq_crc32c *c)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t r = i;
        for (int k = 0; k < 8; k++)
            r = (r >> 1) ^ (CRC32C_POLY & (0u - (r & 1u)));
        c->table[i] = r;
    }
    c->state = 0xFFFFFFFFu;
}

void repq_crc32c_update(repq_crc32c *c, const void *data, size_t size)
{
    const uint8_t *p = data;
    uint32_t s = c->state;
    for (size_t i = 0; i < size; i++)
        s = c->table[(s ^ p[i]) & 0xFFu] ^ (s >> 8);
    c->state = s;
}

uint32_t repq_crc32c_value(const repq_crc32c *c)
{
    return c->state ^ 0xFFFFFFFFu;
}
