// lazygen_demo._C: exposes the generated registration function to Python.
#include <pybind11/pybind11.h>

namespace at {
// Defined in the generated RegisterLazy_0.cpp (named after BACKEND_NAME and the
// dispatch key); lazygen writes no header for it.
void RegisterLazygenDemoLazyNativeFunctions();
}  // namespace at

PYBIND11_MODULE(_C, m) {
  m.doc() = "lazygen_demo's generated lazy-tensor kernels";
  m.def("register_kernels", &at::RegisterLazygenDemoLazyNativeFunctions,
        "Register the generated kernels for the Lazy dispatch key (idempotent).");
}
