//! The attribute macros behind `mediaflow-plugin-sdk`: one per plugin kind. Each checks the
//! annotated function's signature and expands `wit_bindgen::generate!` for that kind's world
//! privately in the plugin crate, wired to the SDK's shared types, then exports the function.
//! The WIT text is embedded here at build time, so a plugin crate needs no `wit/` folder.

use proc_macro::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ItemFn, parse_macro_input};

/// The `mediaflow:plugin` WIT package the SDK was built against.
const WIT: &str = include_str!("../../../wit/plugin.wit");

/// Turns `fn NAME(info: MediaInfo, src: &Source) -> Result<Vec<MetadataEntry>, PluginError>`
/// into a metadata-extractor plugin.
#[proc_macro_attribute]
pub fn metadata_extractor(attr: TokenStream, item: TokenStream) -> TokenStream {
    let func = parse_macro_input!(item as ItemFn);
    expand(
        attr,
        func,
        Kind {
            world: "metadata-extractor",
            interface: "extractor",
            signature: quote!(
                fn(
                    ::mediaflow_plugin_sdk::MediaInfo,
                    &::mediaflow_plugin_sdk::Source,
                ) -> ::core::result::Result<
                    ::std::vec::Vec<::mediaflow_plugin_sdk::MetadataEntry>,
                    ::mediaflow_plugin_sdk::PluginError,
                >
            ),
            glue: quote! {
                fn extract(
                    info: ::mediaflow_plugin_sdk::MediaInfo,
                    src: &::mediaflow_plugin_sdk::Source,
                ) -> ::core::result::Result<
                    ::std::vec::Vec<::mediaflow_plugin_sdk::MetadataEntry>,
                    ::mediaflow_plugin_sdk::PluginError,
                > {
                    __USER(info, src)
                }
            },
        },
    )
}

/// Turns `fn NAME(info: MediaInfo, target: Size) -> Result<Option<Overlay>, PluginError>`
/// into a watermarker plugin.
#[proc_macro_attribute]
pub fn watermarker(attr: TokenStream, item: TokenStream) -> TokenStream {
    let func = parse_macro_input!(item as ItemFn);
    expand(
        attr,
        func,
        Kind {
            world: "watermarker",
            interface: "watermark",
            signature: quote!(
                fn(
                    ::mediaflow_plugin_sdk::MediaInfo,
                    ::mediaflow_plugin_sdk::Size,
                ) -> ::core::result::Result<
                    ::core::option::Option<::mediaflow_plugin_sdk::Overlay>,
                    ::mediaflow_plugin_sdk::PluginError,
                >
            ),
            glue: quote! {
                fn draw(
                    info: ::mediaflow_plugin_sdk::MediaInfo,
                    target: ::mediaflow_plugin_sdk::Size,
                ) -> ::core::result::Result<
                    ::core::option::Option<::mediaflow_plugin_sdk::Overlay>,
                    ::mediaflow_plugin_sdk::PluginError,
                > {
                    __USER(info, target)
                }
            },
        },
    )
}

/// Turns `fn NAME(event: JobEvent) -> Result<Vec<Notification>, PluginError>` into a
/// notification-rule plugin.
#[proc_macro_attribute]
pub fn notification_rule(attr: TokenStream, item: TokenStream) -> TokenStream {
    let func = parse_macro_input!(item as ItemFn);
    expand(
        attr,
        func,
        Kind {
            world: "notification-rule",
            interface: "notifier",
            signature: quote!(
                fn(
                    ::mediaflow_plugin_sdk::JobEvent,
                ) -> ::core::result::Result<
                    ::std::vec::Vec<::mediaflow_plugin_sdk::Notification>,
                    ::mediaflow_plugin_sdk::PluginError,
                >
            ),
            glue: quote! {
                fn evaluate(
                    event: ::mediaflow_plugin_sdk::JobEvent,
                ) -> ::core::result::Result<
                    ::std::vec::Vec<::mediaflow_plugin_sdk::Notification>,
                    ::mediaflow_plugin_sdk::PluginError,
                > {
                    __USER(event)
                }
            },
        },
    )
}

struct Kind {
    world: &'static str,
    interface: &'static str,
    signature: proc_macro2::TokenStream,
    glue: proc_macro2::TokenStream,
}

fn expand(attr: TokenStream, func: ItemFn, kind: Kind) -> TokenStream {
    if !attr.is_empty() {
        let err = syn::Error::new(
            proc_macro2::Span::call_site(),
            "this attribute takes no arguments; configuration comes from the engine at run time",
        );
        return err.to_compile_error().into();
    }
    let name = &func.sig.ident;
    let signature = &kind.signature;
    let sig_check = quote_spanned! {func.sig.span()=>
        const _: #signature = #name;
    };
    let version = WIT
        .lines()
        .find_map(|l| l.trim().strip_prefix("package mediaflow:plugin@"))
        .map(|v| v.trim_end_matches(';').to_string())
        .unwrap_or_else(|| "0.1.0".to_string());
    let world = format!("mediaflow:plugin/{}@{version}", kind.world);
    let types = format!("mediaflow:plugin/types@{version}");
    let host = format!("mediaflow:plugin/host@{version}");
    // Only the metadata extractor imports `input`; wit-bindgen rejects unused mappings.
    let input_mapping = (kind.world == "metadata-extractor").then(|| {
        let input = format!("mediaflow:plugin/input@{version}");
        quote!(#input: ::mediaflow_plugin_sdk::__private::input,)
    });
    let wit = proc_macro2::Literal::string(WIT);
    let iface = format_ident!("{}", kind.interface);
    let glue = &kind.glue;
    quote! {
        #func

        #sig_check

        // The component exports only exist on wasm32; natively (unit tests, `cargo check` of the
        // workspace) the function is plain Rust and the signature check above still applies.
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        #[allow(missing_docs, unsafe_code, clippy::all)]
        mod __mediaflow_plugin_export {
            ::mediaflow_plugin_sdk::__private::wit_bindgen::generate!({
                inline: #wit,
                world: #world,
                runtime_path: "::mediaflow_plugin_sdk::__private::wit_bindgen::rt",
                with: {
                    #types: ::mediaflow_plugin_sdk::__private::types,
                    #host: ::mediaflow_plugin_sdk::__private::host,
                    #input_mapping
                },
            });

            use super::#name as __USER;

            struct Plugin;

            impl exports::mediaflow::plugin::#iface::Guest for Plugin {
                #glue
            }

            export!(Plugin);
        }
    }
    .into()
}
