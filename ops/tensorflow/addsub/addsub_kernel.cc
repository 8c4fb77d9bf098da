// CPU kernel: a plain loop the compiler vectorizes (-O3); no framework headers.
#include "addsub_kernel.h"

extern "C" void trtis_addsub_cpu(const float* a, const float* b, float* sum, float* diff,
                                 int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float x = a[i];
    const float y = b[i];
    sum[i] = x + y;
    diff[i] = x - y;
  }
}
