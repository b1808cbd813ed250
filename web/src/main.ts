import { createApp } from "vue";
import App from "@/App.vue";
import { router } from "@/router";
import { onSignOut } from "@/lib/session";
import "@/styles.css";

onSignOut(() => {
  const here = router.currentRoute.value;
  if (!here.meta.public) {
    void router.push({ name: "sign-in", query: { next: here.fullPath } });
  }
});

createApp(App).use(router).mount("#app");
