// The SQL schemas compiled into the binaries (schema/journal/*.sql, schema/state/*.sql).
#pragma once
#include <cstdint>
#include <span>

#include "core/embedded.hpp"

namespace rsgate::schema {
extern const std::span<const embedded_file> journal_migrations;
extern const std::span<const embedded_file> state_migrations;

// PRAGMA application_id values: "rsgJ" for the journal, "rsgS" for state.
inline constexpr std::int32_t kJournalApplicationId = 0x7273674A;
inline constexpr std::int32_t kStateApplicationId = 0x72736753;
}  // namespace rsgate::schema
