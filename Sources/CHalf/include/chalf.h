#ifndef FEDPI_CHALF_H
#define FEDPI_CHALF_H
#include <stddef.h>
#include <stdint.h>

/// IEEE binary32 -> binary16, round to nearest even; overflow -> inf, NaN stays NaN.
void fedpi_f32_to_f16(const float *src, uint16_t *dst, size_t count);
/// IEEE binary16 -> binary32, exact.
void fedpi_f16_to_f32(const uint16_t *src, float *dst, size_t count);
/// The portable (no special instructions) versions, used as fallback and as test reference.
void fedpi_f32_to_f16_portable(const float *src, uint16_t *dst, size_t count);
void fedpi_f16_to_f32_portable(const uint16_t *src, float *dst, size_t count);
/// 1 when the fast hardware path is in use on this CPU.
int fedpi_f16_hardware(void);

#endif
