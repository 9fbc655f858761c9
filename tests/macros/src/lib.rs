//! `#[e2e::test]`: declares an end-to-end test and registers it with the harness in the same
//! place, so a test that is written is a test that runs (see the `e2e` crate's `suite`).
//!
//! ```ignore
//! #[e2e::test]
//! fn create_read_update_delete() -> TestResult { ... }
//!
//! #[e2e::test(devhost_only)] // skipped, and reported so, when E2E_RUNTIME names another runtime
//! fn routes_and_spin_headers() -> TestResult { ... }
//! ```
//!
//! The test is named after its module path without the crate: `events::create_read_update_delete`.

use proc_macro::TokenStream;
use quote::quote;
use syn::spanned::Spanned;
use syn::{Error, Ident, ItemFn, parse_macro_input};

#[proc_macro_attribute]
pub fn test(arguments: TokenStream, item: TokenStream) -> TokenStream {
    let function = parse_macro_input!(item as ItemFn);
    let devhost_only = match devhost_only(arguments) {
        Ok(devhost_only) => devhost_only,
        Err(error) => return error.to_compile_error().into(),
    };
    let signature = &function.sig;
    if !signature.inputs.is_empty() || signature.asyncness.is_some() || !signature.generics.params.is_empty()
    {
        return Error::new(
            signature.span(),
            "an e2e test is a plain `fn name() -> TestResult` without parameters",
        )
        .to_compile_error()
        .into();
    }
    let name = &signature.ident;
    quote! {
        #function
        ::e2e::inventory::submit! {
            ::e2e::Test {
                module_path: module_path!(),
                name: stringify!(#name),
                run: #name,
                devhost_only: #devhost_only,
            }
        }
    }
    .into()
}

/// The attribute's one optional argument, `devhost_only`.
fn devhost_only(arguments: TokenStream) -> syn::Result<bool> {
    if arguments.is_empty() {
        return Ok(false);
    }
    let argument: Ident = syn::parse(arguments)?;
    if argument != "devhost_only" {
        return Err(Error::new(argument.span(), "the only argument is `devhost_only`"));
    }
    Ok(true)
}
