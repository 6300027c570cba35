//! Routes compiled: the `[[routes]]` key globs as one [`globset::GlobSet`], built once at
//! start-up, so finding a message's profile is one match over the key, not a compilation per
//! route per message. The first route (in file order) whose bucket and key glob match wins; a
//! key no route matches gets `default_profile`.

use super::Route;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// The routes of a configuration, ready to match.
#[derive(Debug, Clone)]
pub struct Routes {
    keys: GlobSet,
    /// (bucket or `*`, profile) per route, in file order.
    targets: Vec<(String, String)>,
    default_profile: String,
}

impl Routes {
    /// Compile `routes`; the error names the route (index) whose glob does not compile.
    pub fn compile(routes: &[Route], default_profile: &str) -> Result<Routes, (usize, String)> {
        let mut keys = GlobSetBuilder::new();
        for (i, route) in routes.iter().enumerate() {
            // `*` stays within one path segment; `**` crosses them.
            let glob = GlobBuilder::new(&route.key)
                .literal_separator(true)
                .build()
                .map_err(|e| (i, e.to_string()))?;
            keys.add(glob);
        }
        Ok(Routes {
            keys: keys.build().map_err(|e| (0, e.to_string()))?,
            targets: routes
                .iter()
                .map(|r| (r.bucket.clone(), r.profile.clone()))
                .collect(),
            default_profile: default_profile.to_string(),
        })
    }

    /// No routes: everything gets `default_profile`.
    pub fn none(default_profile: &str) -> Routes {
        Routes {
            keys: GlobSet::empty(),
            targets: Vec::new(),
            default_profile: default_profile.to_string(),
        }
    }

    /// The profile for the object `key` in `bucket`.
    pub fn profile(&self, bucket: &str, key: &str) -> &str {
        self.keys
            .matches(key)
            .into_iter()
            .map(|i| &self.targets[i])
            .find(|(b, _)| b == "*" || b == bucket)
            .map_or(&self.default_profile, |(_, profile)| profile)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(bucket: &str, key: &str, profile: &str) -> Route {
        Route {
            bucket: bucket.into(),
            key: key.into(),
            profile: profile.into(),
        }
    }

    #[test]
    fn the_first_matching_route_wins_and_single_stars_stay_in_a_segment() {
        let routes = Routes::compile(
            &[
                route("uploads", "videos/*.mp4", "flat"),
                route("*", "videos/**", "any-video"),
                route("other", "**", "other"),
            ],
            "default",
        )
        .expect("compiles");
        assert_eq!(routes.profile("uploads", "videos/a.mp4"), "flat");
        assert_eq!(routes.profile("uploads", "videos/2024/a.mp4"), "any-video");
        assert_eq!(routes.profile("x", "videos/a.mp4"), "any-video");
        assert_eq!(routes.profile("other", "a.jpg"), "other");
        assert_eq!(routes.profile("uploads", "a.jpg"), "default");
        assert_eq!(
            Routes::compile(&[route("*", "a/**", "p"), route("*", "a/[", "p")], "d")
                .err()
                .map(|e| e.0),
            Some(1),
            "the route whose glob does not compile is named"
        );
    }
}
