//! `fermyon:spin/variables@2.0.0`: a component reads the variables of its
//! `[component.<id>.variables]` table (resolved at start-up), with Spin's errors.

use std::collections::HashMap;

use wasmtime::component::{HasData, Linker};

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "devhost:host/spin-variables",
        imports: { default: async | trappable },
    });
}

use bindings::fermyon::spin::variables::{self, Error};

/// What the interface sees of the store: the component's id and its variables.
pub struct VariablesView<'a> {
    pub component_id: &'a str,
    pub values: &'a HashMap<String, String>,
}

/// The interface's `HasData`: its host functions get a [`VariablesView`].
struct SpinVariables;

impl HasData for SpinVariables {
    type Data<'a> = VariablesView<'a>;
}

/// Adds the interface to `linker`; `view` projects the store's state onto what it reads.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> VariablesView<'_>,
) -> wasmtime::Result<()> {
    variables::add_to_linker::<T, SpinVariables>(linker, view)
}

impl variables::Host for VariablesView<'_> {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, Error>> {
        if let Err(reason) = crate::variables::validate_name(&name) {
            return Ok(Err(Error::InvalidName(reason.to_string())));
        }
        Ok(match self.values.get(&name) {
            Some(value) => Ok(value.clone()),
            None => Err(Error::Undefined(format!(
                "no variable for \"{}\".\"{name}\"",
                self.component_id
            ))),
        })
    }
}
