// Fixture: helpers shared by several plugins (in the style of TensorRT's plugin/common/):
// they include TensorRT's headers, so whatever includes them needs those headers too.
#ifndef FIXTURE_COMMON_CHECKS_H_
#define FIXTURE_COMMON_CHECKS_H_

#include <NvInferRuntime.h>

namespace fixture {
// Records a failed check (file, line); returns false so callers can `return reportFailure(...)`.
bool reportFailure(char const* what, char const* file, int line) noexcept;
int failureCount() noexcept;
}  // namespace fixture

#define FIXTURE_CHECK(cond) ((cond) ? true : ::fixture::reportFailure(#cond, __FILE__, __LINE__))

#endif  // FIXTURE_COMMON_CHECKS_H_
