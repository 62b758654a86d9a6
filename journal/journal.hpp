// Front door of the journal library: the append-only, hash-chained, signed event journal
// (SPEC §5, docs/journal.md). No Asio inside; the gateway adapts completions to its strands.
#pragma once
#include "journal/entry.hpp"
#include "journal/keys.hpp"
#include "journal/kinds.hpp"
#include "journal/origin.hpp"
#include "journal/reader.hpp"
#include "journal/store.hpp"
#include "journal/writer.hpp"
