//! A component that exports something other than the plugin contract.

wit_bindgen::generate!({
    inline: "
        package hostile:wrong;
        world wrong {
            export run: func() -> u32;
        }
    ",
    world: "wrong",
});

#[derive(Debug)]
pub struct Wrong;

impl Guest for Wrong {
    fn run() -> u32 {
        42
    }
}

#[cfg(target_arch = "wasm32")]
export!(Wrong);
