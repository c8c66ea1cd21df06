// Errors about what the caller passed (a shape, a dtype, β out of range): a distinct type, so the
// binding can surface them as EdpoInputError (code EDPO_INPUT) rather than an internal failure.
#pragma once
#include <c10/util/StringUtil.h>

#include <stdexcept>
#include <string>

namespace edpo {

class ArgumentError : public std::invalid_argument {
 public:
  explicit ArgumentError(const std::string& message) : std::invalid_argument(message) {}
};

}  // namespace edpo

// Like TORCH_CHECK, for user-supplied arguments: the message names the argument as users spell it.
#define EDPO_ARG_CHECK(cond, ...)                                      \
  do {                                                                 \
    if (!(cond)) throw ::edpo::ArgumentError(::c10::str(__VA_ARGS__)); \
  } while (0)
