// Uses the generated IR through the include_prefix spelling.
#include <ts_backend/generated/LazyIr.h>

#include <type_traits>

static_assert(std::is_base_of_v<torch::lazy::TsNode, torch::lazy::AdaptiveAvgPool2d>,
              "full_codegen ops become TsNode subclasses");

torch::lazy::OpKind lazy_ir_smoke_kind() {
  return torch::lazy::AdaptiveAvgPool2d::ClassOpKind();
}
