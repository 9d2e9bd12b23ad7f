// Debian's libstb-dev: stb_image (PNG, JPEG, BMP, GIF, ...) compiled into libstb.a.
#include <stb_image.h>
