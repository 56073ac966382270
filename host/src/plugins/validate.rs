//! Load-time checks on the component's bytes, before compiling: it is a component (not a core
//! module, not garbage), and no core module in it declares more memory or table than the limits
//! allow.

use wasmparser::{Encoding, Parser, Payload};

use crate::plugins::error::LoadError;
use crate::plugins::limits::{Limit, Limits};

const WASM_PAGE: u64 = 64 << 10;

pub(crate) fn check_shape(bytes: &[u8], limits: &Limits) -> Result<(), LoadError> {
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| LoadError::InvalidComponent(e.to_string()))?;
        match payload {
            Payload::Version {
                encoding: Encoding::Module,
                ..
            } if is_outermost(bytes, &payload) => {
                return Err(LoadError::InvalidComponent(
                    "this is a core module, not a component (build it with `ratecard plugin build`)"
                        .to_owned(),
                ));
            }
            Payload::TableSection(tables) => {
                for table in tables {
                    let table = table.map_err(|e| LoadError::InvalidComponent(e.to_string()))?;
                    if table.ty.initial > limits.table_elements as u64 {
                        return Err(LoadError::LimitExceeded {
                            limit: Limit::TableElements,
                            message: format!(
                                "declares a table of {} elements, limit {}",
                                table.ty.initial, limits.table_elements
                            ),
                        });
                    }
                }
            }
            Payload::MemorySection(memories) => {
                for memory in memories {
                    let memory = memory.map_err(|e| LoadError::InvalidComponent(e.to_string()))?;
                    let bytes = memory.initial.saturating_mul(WASM_PAGE);
                    if bytes > limits.memory_bytes as u64 {
                        return Err(LoadError::LimitExceeded {
                            limit: Limit::Memory,
                            message: format!(
                                "declares {bytes} bytes of memory, limit {}",
                                limits.memory_bytes
                            ),
                        });
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn is_outermost(bytes: &[u8], payload: &Payload<'_>) -> bool {
    match payload {
        Payload::Version { range, .. } => range.start == 0 && bytes.len() >= 8,
        _ => false,
    }
}
