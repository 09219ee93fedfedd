/* Internal: CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, initial value and final
 * xor 0xFFFFFFFF), the checksum the safetensors writer stores in the files it writes
 * (docs/format.md). CRC32C("123456789") = 0xE3069283. */
#ifndef REPQ_IO_CRC32C_H
#define REPQ_IO_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* A running checksum with its own lookup table (1 KiB, built by _init; no shared state). */
typedef struct repq_crc32c {
    uint32_t table[256];
    uint32_t state;
} repq_crc32c;

void repq_crc32c_init(repq_crc32c *c);
void repq_crc32c_update(repq_crc32c *c, const void *data, size_t size);
/* The checksum of everything fed so far (the running state is kept). */
uint32_t repq_crc32c_value(const repq_crc32c *c);

#endif
