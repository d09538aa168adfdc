// placeholder: filled in by the native-kernels work (issue 3)
#include "kernels/cpu.h"
