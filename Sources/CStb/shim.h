// Debian's libstb-dev: stb_image (PNG, JPEG, BMP, GIF, ... decoding) and stb_image_write (PNG and
// JPEG encoding), compiled into libstb.a.
#include <stb_image.h>
#include <stb_image_write.h>
